// js<->js self-test of peer.mjs: two `listen` peers driven over stdin/stdout JSON lines,
// exactly as the C# tests drive one. Run: `npm test` (node --test) in this folder.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const PEER = fileURLToPath(new URL('./peer.mjs', import.meta.url))
const TIMEOUT_MS = 20_000

class Peer {
  static async start (...args) {
    const p = new Peer(args)
    p.ready = await p.next()
    assert.equal(p.ready.event, 'ready')
    return p
  }

  constructor (args) {
    this.proc = spawn(process.execPath, [PEER, 'listen', ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
    this.lines = []
    this.waiters = []
    this.exit = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)))
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const msg = JSON.parse(line)
      const w = this.waiters.shift()
      if (w) w(msg)
      else this.lines.push(msg)
    })
  }

  next () {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift())
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('peer did not answer in time')), TIMEOUT_MS)
      this.waiters.push((m) => { clearTimeout(timer); resolve(m) })
    })
  }

  async send (cmd) {
    this.proc.stdin.write(JSON.stringify(cmd) + '\n')
    return this.next()
  }

  get addr () { return this.ready.addrs[0] }
  get peerId () { return this.ready.peerId }
}

const peers = []
async function startPeer (...args) {
  const p = await Peer.start(...args)
  peers.push(p)
  return p
}
after(() => { for (const p of peers) p.proc.kill() })

test('ping and identify between two js peers', async () => {
  const a = await startPeer()
  const b = await startPeer()
  const pong = await b.send({ cmd: 'ping', addr: a.addr, count: 3 })
  assert.equal(pong.ok, true, pong.error)
  assert.equal(pong.rtts.length, 3)

  const id = await b.send({ cmd: 'identify', addr: a.addr })
  assert.equal(id.ok, true, id.error)
  assert.equal(id.peerId, a.peerId)
  assert.ok(id.protocols.includes('/ipfs/ping/1.0.0'))
  assert.ok(id.protocols.includes('/ipfs/id/1.0.0'))

  const bad = await b.send({ cmd: 'nope' })
  assert.equal(bad.ok, false)
  const stillAlive = await b.send({ cmd: 'peers' })
  assert.equal(stillAlive.ok, true)
  assert.ok(stillAlive.peers.some((p) => p.peerId === a.peerId))

  assert.deepEqual(await a.send({ cmd: 'stop' }), { ok: true })
  assert.equal(await a.exit, 0)
})

test('autonat-dial against a stock --autonat peer gets its answer (a refusal: loopback is private to js)', async () => {
  const server = await startPeer('--autonat')
  const client = await startPeer()

  const identified = await client.send({ cmd: 'identify', addr: server.addr })
  const answer = await client.send({ cmd: 'autonat-dial', addr: server.addr })

  assert.ok(identified.protocols.includes('/libp2p/autonat/1.0.0'), JSON.stringify(identified))
  assert.equal(answer.ok, true, JSON.stringify(answer))
  assert.equal(answer.status, 'E_DIAL_REFUSED')
  assert.equal(answer.statusText, 'no dialable addresses')
})

test('seed gives a stable peer id', async () => {
  const seed = '01'.repeat(32)
  const a = await startPeer('--seed', seed)
  const b = await startPeer('--seed', seed)
  assert.equal(a.peerId, b.peerId)
  a.proc.stdin.end() // closing stdin exits cleanly
  assert.equal(await a.exit, 0)
})

test('echo-server echoes one length-prefixed message (via bench-client echo)', async () => {
  const a = await startPeer()
  assert.equal((await a.send({ cmd: 'echo-server', protocol: '/test/echo/1.0.0' })).ok, true)
  const result = await benchClient('--addr', a.addr, '--mode', 'echo', '--protocol', '/test/echo/1.0.0',
    '--seconds', '1', '--concurrency', '2', '--size', '100')
  assert.equal(result.errors, 0, result.firstError)
  assert.ok(result.calls > 0)
})

test('DHT provide on one peer, findProviders on the other', async () => {
  const a = await startPeer('--dht')
  const b = await startPeer('--dht')
  assert.equal((await b.send({ cmd: 'dial', addr: a.addr })).ok, true)
  assert.equal((await a.send({ cmd: 'waitRoutingTable', min: 1, timeoutMs: 10_000 })).ok, true)
  assert.equal((await b.send({ cmd: 'waitRoutingTable', min: 1, timeoutMs: 10_000 })).ok, true)

  const provided = await a.send({ cmd: 'provide', topic: 'model/llama-3-8b' })
  assert.equal(provided.ok, true, provided.error)
  const found = await b.send({ cmd: 'findProviders', topic: 'model/llama-3-8b', timeoutMs: 5000 })
  assert.equal(found.ok, true, found.error)
  assert.equal(found.cid, provided.cid)
  assert.ok(found.providers.some((p) => p.peerId === a.peerId), JSON.stringify(found))

  const peer = await b.send({ cmd: 'findPeer', peerId: a.peerId, timeoutMs: 5000 })
  assert.equal(peer.ok, true, peer.error)
  assert.ok(peer.addrs.length > 0)
})

test('ping and identify right after connecting work while the DHT is busy with the new contact', async () => {
  const a = await startPeer('--dht')
  const b = await startPeer('--dht')
  for (let i = 0; i < 3; i++) {
    const [pong, id] = [await b.send({ cmd: 'ping', addr: a.addr, count: 2 }), await b.send({ cmd: 'identify', addr: a.addr })]
    assert.equal(pong.ok, true, pong.error)
    assert.equal(id.ok, true, id.error)
    assert.ok(id.protocols.includes('/p2pinference/kad/1.0.0'))
    assert.equal((await b.send({ cmd: 'hangup', addr: a.addr })).ok, true)
  }
})

test('a lonely DHT peer answers provide with a timeout error and keeps serving commands', async () => {
  const a = await startPeer('--dht')
  const res = await a.send({ id: 1, cmd: 'provide', topic: 't', timeoutMs: 300 })
  assert.equal(res.id, 1)
  assert.equal(res.ok, false)
  const miss = await a.send({ cmd: 'findPeer', peerId: a.peerId.replace(/.$/, 'x'), timeoutMs: 300 })
  assert.equal(miss.ok, false)
  assert.deepEqual(await a.send({ id: 'x', cmd: 'routingTable' }), { id: 'x', ok: true, size: 0, peers: [] })
})

function benchClient (...args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [PEER, 'bench-client', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    proc.stdout.on('data', (d) => { out += d })
    const timer = setTimeout(() => { proc.kill(); reject(new Error('bench-client timed out')) }, TIMEOUT_MS)
    proc.on('exit', (code) => {
      clearTimeout(timer)
      try {
        const res = JSON.parse(out.trim())
        if (code !== 0) reject(new Error(`bench-client exited ${code}: ${out}`))
        else resolve(res)
      } catch (err) { reject(err) }
    })
  })
}

test('bench-client throughput, ping and connect against bench-server', async () => {
  const a = await startPeer('--bench-server')
  const tp = await benchClient('--addr', a.addr, '--mode', 'throughput', '--mib', '8')
  assert.equal(tp.bytes, 8 * 1024 * 1024)
  assert.ok(tp.MBps > 0)
  const pg = await benchClient('--addr', a.addr, '--mode', 'ping', '--count', '20')
  assert.ok(pg.p50 > 0)
  const cn = await benchClient('--addr', a.addr, '--mode', 'connect', '--count', '10')
  assert.ok(cn.handshakesPerSec > 0)
})
