#!/usr/bin/env node
// Rogue peers for the trust tests (tests/integration/Trust): stock js-libp2p nodes (node.mjs) that
// join P2PInference's DHT through a bootstrap node, provide worker topics exactly as our workers
// announce them (the CIDv1 raw sha2-256 of the topic, our TopicKey), and serve
// /p2pinference/rpc/1.0.0 by recording every byte that arrives on it.
//
// Stdout carries ONLY JSON lines; diagnostics go to stderr.
//
//   node rogue.mjs --config FILE
//
//   FILE: {"bootstrap": MA, "dhtProtocol": "/p2pinference/kad/1.0.0",
//          "rogues": [{"name": N, "seed": HEX32, "topics": [T, ...], "answer": HEX}, ...]}
//   Each rogue is its own libp2p node in this process, with the Ed25519 key of its seed (so the test
//   knows its PeerId and can issue it a grant beforehand). To every RPC stream it answers, once the
//   first uvarint-length-prefixed message is complete, with the bytes of "answer" as they are (the
//   test encodes them: an RPC response frame holding whatever grant the rogue presents), then closes
//   its side; it goes on recording until the caller closes.
//
//   Prints once, when every rogue has joined and provided every topic:
//     {"event":"ready","rogues":[{"name","peerId","addrs":[...]}]}
//   Then answers one JSON command per stdin line:
//     {"cmd":"received"} -> {"ok":true,"streams":[{"rogue","from","protocol","hex"}]}
//                           every RPC stream any rogue accepted, with all bytes received on it (hex)
//   Closing stdin (or SIGTERM) stops the nodes and exits 0.
import './polyfill.mjs'

import { createInterface } from 'node:readline'
import { readFileSync } from 'node:fs'
import { multiaddr } from '@multiformats/multiaddr'
import { createNode, selfAddrs, topicCid, DEFAULT_DHT_PROTOCOL } from './node.mjs'

console.log = console.error
console.info = console.error
console.debug = console.error

const RPC_PROTOCOL = '/p2pinference/rpc/1.0.0'
// A bound for a hang: on a loaded machine the first provide waits seconds for the initial self-query.
const JOIN_TIMEOUT_MS = 120_000
const MAX_RECORDED = 1024 * 1024

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function errorText (err) {
  if (err == null) return 'unknown error'
  const name = err.name && err.name !== 'Error' ? `${err.name}: ` : ''
  return `${name}${err.message ?? String(err)}`
}

// Length of a complete uvarint-prefixed message at the start of bytes, or -1 while incomplete.
function completeFrameLength (bytes) {
  let value = 0
  for (let i = 0; i < bytes.length && i < 5; i++) {
    value += (bytes[i] & 0x7f) * 2 ** (7 * i)
    if ((bytes[i] & 0x80) === 0) return bytes.length >= i + 1 + value ? i + 1 + value : -1
  }
  return -1
}

const streams = []

function rpcHandler (name, answer) {
  return async (stream, connection) => {
    const record = { rogue: name, from: connection.remotePeer.toString(), protocol: stream.protocol ?? RPC_PROTOCOL, chunks: [], bytes: 0 }
    streams.push(record)
    let answered = false
    try {
      for await (const chunk of stream) {
        const bytes = chunk.subarray()
        if (record.bytes + bytes.byteLength <= MAX_RECORDED) record.chunks.push(Buffer.from(bytes))
        record.bytes += bytes.byteLength
        if (!answered && completeFrameLength(Buffer.concat(record.chunks)) >= 0) {
          answered = true
          stream.send(answer)
          await stream.close()
        }
      }
    } catch (err) {
      console.error(`rogue ${name}: rpc stream from ${record.from}: ${errorText(err)}`)
    }
  }
}

async function startRogue (spec, bootstrap, dhtProtocol) {
  const t0 = Date.now()
  const node = await createNode({ dht: true, dhtProtocol, seedHex: spec.seed })
  await node.start()
  await node.handle(RPC_PROTOCOL, rpcHandler(spec.name, Buffer.from(spec.answer ?? '', 'hex')))
  await node.dial(multiaddr(bootstrap))
  // Identify runs first, then the routing table takes the bootstrap node; provide waits for a peer.
  const deadline = Date.now() + JOIN_TIMEOUT_MS
  while (node.services.dht.routingTable.size < 1) {
    if (Date.now() > deadline) throw new Error(`rogue ${spec.name}: the bootstrap node never entered the routing table`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  console.error(`rogue ${spec.name}: joined after ${Date.now() - t0} ms`)
  await Promise.all(spec.topics.map(async (topic) => {
    await node.contentRouting.provide(await topicCid(topic), { signal: AbortSignal.timeout(JOIN_TIMEOUT_MS) })
    console.error(`rogue ${spec.name}: provided ${topic} after ${Date.now() - t0} ms`)
  }))
  return node
}

const argv = process.argv.slice(2)
const configIndex = argv.indexOf('--config')
if (configIndex < 0 || argv[configIndex + 1] === undefined) {
  console.error('usage: node rogue.mjs --config FILE (see the comment at the top of rogue.mjs)')
  process.exit(2)
}

process.on('unhandledRejection', (err) => { console.error('unhandled rejection:', errorText(err)) })

let nodes = []
let exiting = false
async function shutdown (code) {
  if (exiting) return
  exiting = true
  await Promise.race([Promise.allSettled(nodes.map((n) => n.stop())), new Promise((resolve) => setTimeout(resolve, 1000))])
  process.exit(code)
}

try {
  const config = JSON.parse(readFileSync(argv[configIndex + 1], 'utf8'))
  const dhtProtocol = config.dhtProtocol ?? DEFAULT_DHT_PROTOCOL
  nodes = await Promise.all(config.rogues.map((spec) => startRogue(spec, config.bootstrap, dhtProtocol)))
  emit({
    event: 'ready',
    rogues: config.rogues.map((spec, i) => ({ name: spec.name, peerId: nodes[i].peerId.toString(), addrs: selfAddrs(nodes[i]) }))
  })
} catch (err) {
  emit({ ok: false, error: errorText(err) })
  await shutdown(1)
}

const rl = createInterface({ input: process.stdin, terminal: false })
rl.on('line', (line) => {
  if (line.trim() === '') return
  let res
  try {
    const req = JSON.parse(line)
    if (req?.cmd !== 'received') throw new Error(`unknown cmd: ${JSON.stringify(req?.cmd)}`)
    res = {
      ok: true,
      streams: streams.map((s) => ({ rogue: s.rogue, from: s.from, protocol: s.protocol, bytes: s.bytes, hex: Buffer.concat(s.chunks).toString('hex') }))
    }
  } catch (err) {
    res = { ok: false, error: errorText(err) }
  }
  emit(res)
})
rl.on('close', () => { shutdown(0) })
process.on('SIGTERM', () => { shutdown(0) })
