#!/usr/bin/env node
// js-libp2p reference peer for P2PInference's interop tests and benchmarks.
//
// Stdout carries ONLY JSON lines (one object per line); diagnostics go to stderr.
// Stack: TCP (127.0.0.1 only) + Noise + Yamux, identify (/ipfs/id/1.0.0),
// ping (/ipfs/ping/1.0.0), optionally Kademlia DHT.
//
// ─── Mode 1: listen ─────────────────────────────────────────────────────────
//   node peer.mjs listen [--port 0] [--dht] [--dht-protocol /p2pinference/kad/1.0.0]
//                        [--seed <64 hex chars = 32-byte Ed25519 seed>] [--bench-server] [--bench-limits]
//                        [--autonat] [--relay-service] [--relay-transport] [--relay-listen <relay MA>] [--dcutr]
//                        [--identify-push]
//
//   Services run with js-libp2p's stock options (identify, ping; kad-dht with two loopback
//   deviations commented in createNode; --autonat adds @libp2p/autonat's stock AutoNAT v1 service). --bench-limits (implied by --bench-server and by
//   bench-client mode) raises the connection manager's limits for benchmarks only.
//   --relay-service adds @libp2p/circuit-relay-v2's stock relay server (hop); --relay-transport its
//   stock client transport (dials /p2p-circuit addresses, serves /stop); --relay-listen MA (implies
//   --relay-transport) also listens on MA/p2p-circuit, i.e. reserves on that relay at start: the ready
//   line then lists the circuit address. --dcutr adds @libp2p/dcutr's stock hole-punching service.
//   --identify-push adds @libp2p/identify's stock identify push service (/ipfs/id/push/1.0.0).
//
//   Prints once:  {"event":"ready","peerId":"12D3KooW...","addrs":["/ip4/127.0.0.1/tcp/N/p2p/12D3KooW..."]}
//   Then reads one JSON command per stdin line and answers each with exactly one JSON
//   line, in order (commands run one at a time). If a command carries "id", the answer
//   echoes it. Failures answer {"ok":false,"error":"..."} and the peer keeps running.
//   Closing stdin stops the node and exits 0.
//
//   {"cmd":"ping","addr":MA,"count":N}        -> {"ok":true,"rtts":[ms,...]}       (count default 1)
//   {"cmd":"identify","addr":MA,"timeoutMs":N} -> {"ok":true,"peerId","agentVersion","protocolVersion",
//                                                 "protocols":[...],"listenAddrs":[...],"observedAddr"}
//                                                (dials if needed and reports the identify that ran when the
//                                                 connection opened, waiting up to timeoutMs (default 10000)
//                                                 for it; no second identify stream)
//   {"cmd":"dial","addr":MA}                  -> {"ok":true,"peerId","remoteAddr"}
//   {"cmd":"hangup","addr":MA}                -> {"ok":true}                        (MA or "peerId":P)
//   {"cmd":"provide","topic":T,"timeoutMs":N} -> {"ok":true,"cid"}    (needs --dht; timeoutMs default 10000;
//                                                js kad-dht waits until the routing table has a peer)
//   {"cmd":"findProviders","topic":T,"timeoutMs":N}
//                                             -> {"ok":true,"cid","providers":[{"peerId","addrs"}]}
//                                                (timeoutMs default 10000; stops at the time limit
//                                                 or when the query ends, whichever comes first)
//   {"cmd":"findPeer","peerId":P,"timeoutMs":N}
//                                             -> {"ok":true,"peerId","addrs"}  (ok:false if no address found)
//   {"cmd":"routingTable"}                    -> {"ok":true,"size":N,"peers":[P,...]}
//   {"cmd":"waitPeerProtocol","peerId":P,"protocol":X,"timeoutMs":T}
//                                             -> {"ok":true,"protocols":[...]}  once the peer store lists X among
//                                                P's protocols (woken by its peer:update events; an identify push
//                                                is how it changes on an open connection); ok:false after T ms
//   {"cmd":"waitRoutingTable","min":N,"timeoutMs":T}
//                                             -> {"ok":true,"size":N}  once the DHT routing table
//                                                has >= N peers (a dial is followed by identify and
//                                                only then a routing-table insert, so tests wait here)
//   {"cmd":"echo-server","protocol":P}        -> {"ok":true,"protocol":P}
//        handler: read ONE uvarint-length-prefixed message, write it back (same framing), close.
//   {"cmd":"bench-server"}                    -> {"ok":true,"protocols":[...]}     (see below)
//   {"cmd":"peers"}                           -> {"ok":true,"peers":[{"peerId","addrs":[remoteAddr]}]}
//   {"cmd":"memory"}                          -> {"ok":true,"rss","heapUsed","external","arrayBuffers"}  (bytes;
//                                                runs a full GC first when node was started with --expose-gc)
//   {"cmd":"open-idle","addr":MA,"connections":N}
//                                             -> {"ok":true,"connections":total held}  opens N fresh connections
//                                                (forced dials, TCP+Noise+Yamux) and holds them, idle
//   {"cmd":"idle-streams","perConnection":S}  -> {"ok":true,"streams":total held}  on every held connection opens S
//                                                /bench/echo/1.0.0 streams and holds them without writing
//                                                (the remote's echo handler waits for a message: both ends idle)
//   {"cmd":"close-idle"}                      -> {"ok":true}  closes every held stream and connection
//        (the benchmarks' memory rows: "memory" on both processes before and after open-idle/idle-streams)
//   {"cmd":"autonat-dial","addr":MA,"dialAddrs":[MA,...]}
//                                             -> {"ok":true,"status","statusText","addr"}  opens /libp2p/autonat/1.0.0
//                                                to MA and sends one DIAL for this node (dialAddrs default: its own
//                                                listen addresses) with @libp2p/autonat's own message codec; answers
//                                                the DIAL_RESPONSE (status as named in the spec, e.g. "E_DIAL_REFUSED")
//   {"cmd":"stop"}                            -> {"ok":true} then exit 0
//
//   Provide/findProviders key for topic T: CIDv1, codec raw (0x55), sha2-256 multihash of UTF-8(T).
//
// ─── Bench protocols (registered by "bench-server" or --bench-server) ───────
//   /bench/throughput/1.0.0 : client sends any number of bytes then closes its write side;
//                             server discards them and, at EOF, replies with the total byte count
//                             as an 8-byte big-endian unsigned integer, then closes.
//   /bench/echo/1.0.0       : same as echo-server: one uvarint-length-prefixed message echoed back.
//   (ping benchmarks use the standard /ipfs/ping/1.0.0.)
//
// ─── Mode 2: bench-client (starts its own non-listening node, prints ONE JSON line, exits) ──
//   node peer.mjs bench-client --addr MA --mode throughput [--mib 64] [--chunk 65536]
//       -> {"mode":"throughput","bytes","seconds","MBps","MiBps"}   (MB = 10^6 bytes; the clock stops
//          when the server's 8-byte acknowledgement arrives, so buffered-but-unsent data isn't counted)
//   node peer.mjs bench-client --addr MA --mode ping [--count 100] [--one-stream]
//       -> {"mode":"ping","count","p50","p99","min","max","mean"}   (ms, one connection, sequential;
//          each ping opens a new stream, as the ping service does, unless --one-stream: then every
//          32-byte round trip runs on one /ipfs/ping/1.0.0 stream)
//   node peer.mjs bench-client --addr MA --mode connect [--count 50] [--warmup 0]
//       -> {"mode":"connect","count","seconds","handshakesPerSec","p50","p99"}
//          (each iteration: fresh TCP+Noise+Yamux dial, then hang up; sequential)
//   node peer.mjs bench-client --addr MA --mode echo [--concurrency 8] [--seconds 5] [--size 64]
//                              [--protocol /bench/echo/1.0.0]
//       -> {"mode":"echo","calls","errors","seconds","callsPerSec","p50","p99"}
//          (C callers loop for D seconds; each call opens a new stream, writes one uvarint-length-
//           prefixed message of --size bytes, reads the echo, closes the stream)
//   On failure: {"ok":false,"error":"..."} and exit code 1.
//
// Node 20 needs a Promise.withResolvers polyfill; it must load before libp2p (imports hoist).
import './polyfill.mjs'

import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import { randomFillSync } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { lpStream, byteStream, pbStream } from '@libp2p/utils'
// The package's own protobuf codec, which its service uses; not among its exports, so by path.
import { Message as AutoNatMessage } from './node_modules/@libp2p/autonat/dist/src/pb/index.js'
import { createNode, selfAddrs, topicCid, DEFAULT_DHT_PROTOCOL } from './node.mjs'

// Nothing but protocol JSON may reach stdout.
console.log = console.error
console.info = console.error
console.debug = console.error

const THROUGHPUT_PROTOCOL = '/bench/throughput/1.0.0'
const ECHO_PROTOCOL = '/bench/echo/1.0.0'
const MAX_ECHO_MESSAGE = 16 * 1024 * 1024
const AUTONAT_PROTOCOL = '/libp2p/autonat/1.0.0'

function parseArgs (argv) {
  const out = { _: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a.startsWith('--')) {
      const key = a.slice(2)
      const next = argv[i + 1]
      if (next === undefined || next.startsWith('--')) {
        out[key] = true
      } else {
        out[key] = next
        i++
      }
    } else {
      out._.push(a)
    }
  }
  return out
}

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function errorText (err) {
  if (err == null) return 'unknown error'
  const name = err.name && err.name !== 'Error' ? `${err.name}: ` : ''
  return `${name}${err.message ?? String(err)}`
}

function intArg (value, fallback, name) {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0) throw new Error(`invalid --${name}: ${value}`)
  return n
}


// Stock identify runs once per connection, when it opens, and stock peers accept one identify
// stream per connection: asking again would be reset. So the identify command reports the
// result of the run on connect, as the peer store has it.
function trackIdentify (node) {
  const results = new Map() // connection id -> result of the identify that ran on it
  const waiters = new Map() // connection id -> [resolve, ...]
  node.addEventListener('peer:identify', (evt) => {
    const id = evt.detail.connection.id
    results.set(id, evt.detail)
    for (const resolve of waiters.get(id) ?? []) resolve(evt.detail)
    waiters.delete(id)
  })
  node.addEventListener('connection:close', (evt) => {
    results.delete(evt.detail.id)
  })
  return async (connection, timeoutMs) => {
    const known = results.get(connection.id)
    if (known !== undefined) return known
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = waiters.get(connection.id) ?? []
        waiters.set(connection.id, list.filter((w) => w !== done))
        reject(new Error(`identify of ${connection.remotePeer} did not finish within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = (result) => { clearTimeout(timer); resolve(result) }
      waiters.set(connection.id, [...(waiters.get(connection.id) ?? []), done])
    })
  }
}



function requireAddr (req) {
  if (typeof req.addr !== 'string') throw new Error('"addr" must be a multiaddr string')
  return multiaddr(req.addr)
}

function requireDht (node) {
  if (node.services.dht == null) throw new Error('DHT not enabled (start with --dht)')
  return node.services.dht
}

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return round3(sorted[idx])
}

function round3 (x) {
  return Math.round(x * 1000) / 1000
}

function stats (samples) {
  const sorted = [...samples].sort((a, b) => a - b)
  const sum = sorted.reduce((a, b) => a + b, 0)
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    min: sorted.length ? round3(sorted[0]) : null,
    max: sorted.length ? round3(sorted[sorted.length - 1]) : null,
    mean: sorted.length ? round3(sum / sorted.length) : null
  }
}

// ─── stream handlers ────────────────────────────────────────────────────────

async function echoOnceHandler (stream) {
  try {
    const lp = lpStream(stream, { maxDataLength: MAX_ECHO_MESSAGE })
    const msg = await lp.read()
    await lp.write(msg)
    await stream.close()
  } catch (err) {
    console.error('echo handler:', errorText(err))
    stream.abort(err)
  }
}

async function throughputSinkHandler (stream) {
  try {
    let total = 0
    for await (const chunk of stream) total += chunk.byteLength
    const ack = new Uint8Array(8)
    new DataView(ack.buffer).setBigUint64(0, BigInt(total))
    stream.send(ack)
    await stream.close()
  } catch (err) {
    console.error('throughput handler:', errorText(err))
    stream.abort(err)
  }
}

// The test and bench protocols are ours, not js-libp2p services: like any application protocol they
// set their own stream limits (stock for a handler: 32 inbound / 64 outbound), sized for benchmark concurrency.
const HANDLER_LIMITS = { maxInboundStreams: 1024, maxOutboundStreams: 1024, force: true }

async function registerBenchServer (node) {
  await node.handle(THROUGHPUT_PROTOCOL, throughputSinkHandler, HANDLER_LIMITS)
  await node.handle(ECHO_PROTOCOL, echoOnceHandler, HANDLER_LIMITS)
  return [THROUGHPUT_PROTOCOL, ECHO_PROTOCOL]
}

// Stock ping allows one outbound ping stream per connection, and kad-dht checks a new contact with
// the same ping service: whichever asks second is refused at once (TooManyOutboundProtocolStreamsError).
// An application retries once the other ping is done; so does this command, for up to 5 s.
async function pingOnce (node, ma) {
  const deadline = performance.now() + 5000
  while (true) {
    try {
      return await node.services.ping.ping(ma)
    } catch (err) {
      if (err?.name !== 'TooManyOutboundProtocolStreamsError' || performance.now() > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
}

// ─── listen mode ────────────────────────────────────────────────────────────

// Connections and streams held open by open-idle / idle-streams until close-idle.
const idle = { connections: [], streams: [] }

async function runCommand (node, req, stop) {
  switch (req.cmd) {
    case 'ping': {
      const ma = requireAddr(req)
      const count = req.count ?? 1
      if (!Number.isInteger(count) || count < 1) throw new Error('"count" must be a positive integer')
      const rtts = []
      for (let i = 0; i < count; i++) rtts.push(await pingOnce(node, ma))
      return { ok: true, rtts }
    }
    case 'identify': {
      const connection = await node.dial(requireAddr(req))
      const r = await node.identifyResult(connection, req.timeoutMs ?? 10_000)
      return {
        ok: true,
        peerId: r.peerId.toString(),
        agentVersion: r.agentVersion ?? null,
        protocolVersion: r.protocolVersion ?? null,
        protocols: [...r.protocols].sort(),
        listenAddrs: r.listenAddrs.map((a) => a.toString()),
        observedAddr: r.observedAddr?.toString() ?? null
      }
    }
    case 'dial': {
      const connection = await node.dial(requireAddr(req))
      return { ok: true, peerId: connection.remotePeer.toString(), remoteAddr: connection.remoteAddr.toString() }
    }
    case 'hangup': {
      const target = typeof req.peerId === 'string' ? peerIdFromString(req.peerId) : requireAddr(req)
      await node.hangUp(target)
      return { ok: true }
    }
    case 'provide': {
      requireDht(node)
      const cid = await topicCid(req.topic)
      const timeoutMs = req.timeoutMs ?? 10_000
      try {
        // js kad-dht holds every query until the routing table has a peer, so a lonely node's
        // provide would block the command loop forever without a time limit.
        await node.contentRouting.provide(cid, { signal: AbortSignal.timeout(timeoutMs) })
      } catch (err) {
        if (err?.name === 'TimeoutError' || err?.name === 'AbortError') {
          throw new Error(`provide not published within ${timeoutMs} ms (DHT routing table size ${node.services.dht.routingTable.size}); the record is stored locally`)
        }
        throw err
      }
      return { ok: true, cid: cid.toString() }
    }
    case 'findProviders': {
      requireDht(node)
      const cid = await topicCid(req.topic)
      const signal = AbortSignal.timeout(req.timeoutMs ?? 10_000)
      const seen = new Map()
      try {
        for await (const p of node.contentRouting.findProviders(cid, { signal })) {
          const id = p.id.toString()
          const addrs = new Set(seen.get(id)?.addrs ?? [])
          for (const a of p.multiaddrs) addrs.add(a.toString())
          seen.set(id, { peerId: id, addrs: [...addrs] })
        }
      } catch (err) {
        // The time limit ends the search; what was found so far is the answer.
        if (!signal.aborted) throw err
      }
      return { ok: true, cid: cid.toString(), providers: [...seen.values()] }
    }
    case 'findPeer': {
      requireDht(node)
      if (typeof req.peerId !== 'string') throw new Error('"peerId" must be a string')
      const info = await node.peerRouting.findPeer(peerIdFromString(req.peerId), {
        signal: AbortSignal.timeout(req.timeoutMs ?? 10_000)
      })
      // The peer store can answer with an entry that has no addresses (e.g. after a failed dial).
      if (info.multiaddrs.length === 0) throw new Error(`peer ${req.peerId} found without addresses`)
      return { ok: true, peerId: info.id.toString(), addrs: info.multiaddrs.map((a) => a.toString()) }
    }
    case 'routingTable': {
      const dht = requireDht(node)
      const peers = []
      for (const bucketPeer of dht.routingTable.kb.toIterable()) peers.push(bucketPeer.peerId.toString())
      return { ok: true, size: dht.routingTable.size, peers }
    }
    case 'waitRoutingTable': {
      const dht = requireDht(node)
      const min = req.min ?? 1
      const deadline = performance.now() + (req.timeoutMs ?? 10_000)
      while (dht.routingTable.size < min) {
        if (performance.now() > deadline) throw new Error(`routing table has ${dht.routingTable.size} < ${min} peers`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      return { ok: true, size: dht.routingTable.size }
    }
    case 'waitPeerProtocol': {
      const peerId = peerIdFromString(req.peerId)
      const listed = async () => (await node.peerStore.get(peerId).catch(() => ({ protocols: [] }))).protocols
      const { promise, resolve, reject } = Promise.withResolvers()
      const onUpdate = async (evt) => {
        if (!evt.detail.peer.id.equals(peerId)) return
        const protocols = await listed()
        if (protocols.includes(req.protocol)) resolve(protocols)
      }
      const timer = setTimeout(async () => reject(new Error(`${req.peerId} lists ${JSON.stringify(await listed())}, not ${req.protocol}, after ${req.timeoutMs ?? 10_000} ms`)),
        req.timeoutMs ?? 10_000)
      node.addEventListener('peer:update', onUpdate)
      try {
        const now = await listed()
        if (now.includes(req.protocol)) resolve(now)
        return { ok: true, protocols: await promise }
      } finally {
        clearTimeout(timer)
        node.removeEventListener('peer:update', onUpdate)
      }
    }
    case 'echo-server': {
      if (typeof req.protocol !== 'string' || !req.protocol.startsWith('/')) throw new Error('"protocol" must be a protocol id like /x/1.0.0')
      await node.handle(req.protocol, echoOnceHandler, HANDLER_LIMITS)
      return { ok: true, protocol: req.protocol }
    }
    case 'bench-server':
      return { ok: true, protocols: await registerBenchServer(node) }
    case 'peers':
      return {
        ok: true,
        peers: node.getConnections().map((c) => ({ peerId: c.remotePeer.toString(), addrs: [c.remoteAddr.toString()] }))
      }
    case 'memory': {
      if (typeof globalThis.gc === 'function') {
        globalThis.gc()
        await new Promise((resolve) => setImmediate(resolve))
        globalThis.gc()
      }
      const m = process.memoryUsage()
      return { ok: true, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }
    }
    case 'open-idle': {
      const ma = requireAddr(req)
      const n = req.connections ?? 1
      if (!Number.isInteger(n) || n < 0) throw new Error('"connections" must be a non-negative integer')
      for (let i = 0; i < n; i++) idle.connections.push(await node.dial(ma, { force: true }))
      return { ok: true, connections: idle.connections.length }
    }
    case 'idle-streams': {
      const s = req.perConnection ?? 1
      if (!Number.isInteger(s) || s < 0) throw new Error('"perConnection" must be a non-negative integer')
      for (const connection of idle.connections) {
        for (let i = 0; i < s; i++) {
          idle.streams.push(await connection.newStream(ECHO_PROTOCOL, { maxOutboundStreams: 100_000 }))
        }
      }
      return { ok: true, streams: idle.streams.length }
    }
    case 'close-idle': {
      await Promise.all(idle.streams.map((st) => st.abort(new Error('idle benchmark over'))))
      await Promise.all(idle.connections.map((c) => c.close()))
      idle.streams = []
      idle.connections = []
      return { ok: true }
    }
    case 'autonat-dial': {
      const ma = requireAddr(req)
      const dialAddrs = Array.isArray(req.dialAddrs) ? req.dialAddrs.map((a) => multiaddr(a)) : node.getMultiaddrs()
      const signal = AbortSignal.timeout(req.timeoutMs ?? 30_000)
      const connection = await node.dial(ma, { signal })
      const stream = await connection.newStream(AUTONAT_PROTOCOL, { signal })
      try {
        const messages = pbStream(stream).pb(AutoNatMessage)
        await messages.write({
          type: AutoNatMessage.MessageType.DIAL,
          dial: { peer: { id: node.peerId.toMultihash().bytes, addrs: dialAddrs.map((a) => a.bytes) } }
        }, { signal })
        const response = await messages.read({ signal })
        if (response.type !== AutoNatMessage.MessageType.DIAL_RESPONSE || response.dialResponse == null) {
          throw new Error(`not a DIAL_RESPONSE: ${JSON.stringify(response)}`)
        }
        const r = response.dialResponse
        return {
          ok: true,
          status: r.status ?? null,
          statusText: r.statusText ?? null,
          addr: r.addr != null ? multiaddr(r.addr).toString() : null
        }
      } finally {
        await stream.close({ signal }).catch((err) => stream.abort(err))
      }
    }
    case 'stop':
      stop.requested = true
      return { ok: true }
    default:
      throw new Error(`unknown cmd: ${JSON.stringify(req.cmd)}`)
  }
}

async function listenMode (args) {
  const node = await createNode({
    port: intArg(args.port, 0, 'port'),
    dht: args.dht === true,
    dhtProtocol: typeof args['dht-protocol'] === 'string' ? args['dht-protocol'] : DEFAULT_DHT_PROTOCOL,
    seedHex: typeof args.seed === 'string' ? args.seed : undefined,
    benchLimits: args['bench-server'] === true || args['bench-limits'] === true,
    autonat: args.autonat === true,
    relayService: args['relay-service'] === true,
    relayTransport: args['relay-transport'] === true,
    relayListen: typeof args['relay-listen'] === 'string' ? args['relay-listen'] : undefined,
    holePunch: args.dcutr === true,
    push: args['identify-push'] === true
  })
  node.identifyResult = trackIdentify(node)
  await node.start()
  if (args['bench-server'] === true) await registerBenchServer(node)
  emit({ event: 'ready', peerId: node.peerId.toString(), addrs: selfAddrs(node) })

  const stop = { requested: false }
  let exiting = false
  const shutdown = async (code) => {
    if (exiting) return
    exiting = true
    try {
      // Graceful close (yamux GoAway, FIN) when quick; a test waiting for our exit shouldn't wait long.
      await Promise.race([node.stop(), new Promise((resolve) => setTimeout(resolve, 1000))])
    } catch (err) {
      console.error('stop:', errorText(err))
    }
    process.exit(code)
  }

  // Commands run strictly one after another so answers come back in request order.
  let chain = Promise.resolve()
  const rl = createInterface({ input: process.stdin, terminal: false })
  rl.on('line', (line) => {
    if (line.trim() === '') return
    chain = chain.then(async () => {
      if (exiting) return
      let req
      let res
      try {
        req = JSON.parse(line)
        if (req === null || typeof req !== 'object') throw new Error('command must be a JSON object')
        res = await runCommand(node, req, stop)
      } catch (err) {
        res = { ok: false, error: errorText(err) }
      }
      if (req?.id !== undefined) res = { id: req.id, ...res }
      emit(res)
      if (stop.requested) await shutdown(0)
    })
  })
  rl.on('close', () => { chain = chain.then(() => shutdown(0)) })
  process.on('SIGTERM', () => { shutdown(0) })
  process.on('SIGINT', () => { shutdown(0) })
}

// ─── bench-client mode ──────────────────────────────────────────────────────

async function benchThroughput (node, ma, args) {
  const mib = intArg(args.mib, 64, 'mib')
  const chunkSize = intArg(args.chunk, 65536, 'chunk')
  if (chunkSize < 1) throw new Error('--chunk must be >= 1')
  const total = Math.round(mib * 1024 * 1024)
  const chunk = randomFillSync(new Uint8Array(chunkSize))
  await node.dial(ma) // connect first: the measurement covers data transfer, not the handshake
  const stream = await node.dialProtocol(ma, THROUGHPUT_PROTOCOL)
  const reader = byteStream(stream)
  const t0 = performance.now()
  let sent = 0
  while (sent < total) {
    const n = Math.min(chunkSize, total - sent)
    const ok = stream.send(n === chunkSize ? chunk : chunk.subarray(0, n))
    sent += n
    if (!ok) await stream.onDrain()
  }
  await stream.close()
  const ack = (await reader.read({ bytes: 8 })).subarray()
  const seconds = (performance.now() - t0) / 1000
  const received = Number(new DataView(ack.buffer, ack.byteOffset, 8).getBigUint64(0))
  if (received !== total) throw new Error(`server acknowledged ${received} bytes, sent ${total}`)
  return {
    mode: 'throughput',
    bytes: total,
    seconds: round3(seconds),
    MBps: round3(total / 1e6 / seconds),
    MiBps: round3(total / 1048576 / seconds)
  }
}

async function benchPing (node, ma, args) {
  const count = intArg(args.count, 100, 'count')
  await node.dial(ma)
  const rtts = []
  if (args['one-stream'] === true) {
    const stream = await node.dialProtocol(ma, '/ipfs/ping/1.0.0')
    const bytes = byteStream(stream)
    const payload = new Uint8Array(32)
    for (let i = 0; i < count; i++) {
      randomFillSync(payload)
      const t0 = performance.now()
      await bytes.write(payload)
      const echo = (await bytes.read({ bytes: 32 })).subarray()
      rtts.push(performance.now() - t0)
      if (!Buffer.from(echo).equals(Buffer.from(payload))) throw new Error('ping echo differs from the payload')
    }
    await stream.close()
    return { mode: 'ping', count, oneStream: true, ...stats(rtts) }
  }
  for (let i = 0; i < count; i++) {
    const t0 = performance.now()
    await node.services.ping.ping(ma)
    rtts.push(performance.now() - t0)
  }
  return { mode: 'ping', count, ...stats(rtts) }
}

async function benchConnect (node, ma, args) {
  const count = intArg(args.count, 50, 'count')
  // Unmeasured first, as the .NET side does: both are measured warm (JIT done), as a long-running node is.
  const warmup = intArg(args.warmup, 0, 'warmup')
  for (let i = 0; i < warmup; i++) await (await node.dial(ma, { force: true })).close()
  const times = []
  const t0 = performance.now()
  for (let i = 0; i < count; i++) {
    const s = performance.now()
    const connection = await node.dial(ma, { force: true })
    times.push(performance.now() - s)
    await connection.close()
  }
  const seconds = (performance.now() - t0) / 1000
  const { p50, p99 } = stats(times)
  return { mode: 'connect', count, seconds: round3(seconds), handshakesPerSec: round3(count / seconds), p50, p99 }
}

async function benchEcho (node, ma, args) {
  const concurrency = intArg(args.concurrency, 8, 'concurrency')
  const seconds = intArg(args.seconds, 5, 'seconds')
  const size = intArg(args.size, 64, 'size')
  const protocol = typeof args.protocol === 'string' ? args.protocol : ECHO_PROTOCOL
  const payload = randomFillSync(new Uint8Array(size))
  const connection = await node.dial(ma)
  const latencies = []
  let errors = 0
  let firstError
  const t0 = performance.now()
  const end = t0 + seconds * 1000
  const caller = async () => {
    while (performance.now() < end) {
      const s = performance.now()
      try {
        const stream = await connection.newStream(protocol, { maxOutboundStreams: Math.max(64, concurrency * 2) })
        const lp = lpStream(stream, { maxDataLength: MAX_ECHO_MESSAGE })
        await lp.write(payload)
        const reply = await lp.read()
        if (reply.byteLength !== size) throw new Error(`echo returned ${reply.byteLength} bytes, expected ${size}`)
        await stream.close()
        latencies.push(performance.now() - s)
      } catch (err) {
        errors++
        firstError ??= errorText(err)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, caller))
  const elapsed = (performance.now() - t0) / 1000
  const { p50, p99 } = stats(latencies)
  return {
    mode: 'echo',
    concurrency,
    size,
    calls: latencies.length,
    errors,
    ...(firstError ? { firstError } : {}),
    seconds: round3(elapsed),
    callsPerSec: round3(latencies.length / elapsed),
    p50,
    p99
  }
}

async function benchClientMode (args) {
  if (typeof args.addr !== 'string') throw new Error('--addr MA is required')
  const ma = multiaddr(args.addr)
  const node = await createNode({ listen: false, benchLimits: true })
  await node.start()
  try {
    switch (args.mode) {
      case 'throughput': return await benchThroughput(node, ma, args)
      case 'ping': return await benchPing(node, ma, args)
      case 'connect': return await benchConnect(node, ma, args)
      case 'echo': return await benchEcho(node, ma, args)
      default: throw new Error('--mode must be throughput|ping|connect|echo')
    }
  } finally {
    await Promise.race([node.stop(), new Promise((resolve) => setTimeout(resolve, 3000))])
  }
}

// ─── main ───────────────────────────────────────────────────────────────────

process.on('unhandledRejection', (err) => { console.error('unhandled rejection:', errorText(err)) })

const args = parseArgs(process.argv.slice(2))
const mode = args._[0]
try {
  if (mode === 'listen') {
    await listenMode(args)
  } else if (mode === 'bench-client') {
    emit(await benchClientMode(args))
    process.exit(0)
  } else {
    console.error('usage: node peer.mjs listen [--port 0] [--dht] [--dht-protocol ID] [--seed HEX32] [--bench-server]\n' +
      '       node peer.mjs bench-client --addr MA --mode throughput|ping|connect|echo [options]\n' +
      'see the comment at the top of peer.mjs for the JSON protocol')
    process.exit(2)
  }
} catch (err) {
  emit({ ok: false, error: errorText(err) })
  process.exit(1)
}
