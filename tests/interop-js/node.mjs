// The js-libp2p node every script here runs: stock services and options, with the two loopback
// deviations of kad-dht commented below. Shared by peer.mjs (interop tests, benchmarks) and
// rogue.mjs (the trust tests' rogue peers).
// Node 20 needs a Promise.withResolvers polyfill; it must load before libp2p (imports hoist).
import './polyfill.mjs'

import { createLibp2p } from 'libp2p'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { identify, identifyPush } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT } from '@libp2p/kad-dht'
import { autoNAT } from '@libp2p/autonat'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

export const DEFAULT_DHT_PROTOCOL = '/p2pinference/kad/1.0.0'
const RAW_CODEC = 0x55

export async function createNode ({ port = 0, listen = true, dht = false, dhtProtocol = DEFAULT_DHT_PROTOCOL, seedHex, benchLimits = false, autonat = false, relayService = false, relayTransport = false, relayListen, holePunch = false, push = false } = {}) {
  let privateKey
  if (seedHex !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(seedHex)) throw new Error('--seed must be 64 hex chars (32 bytes)')
    privateKey = await generateKeyPairFromSeed('Ed25519', Buffer.from(seedHex, 'hex'))
  }

  // js-libp2p's stock services, with their default options: the interop tests must meet what a
  // real js-libp2p deployment runs (e.g. one identify stream per connection each way).
  const services = {
    identify: identify(),
    ping: ping()
  }
  // Stock @libp2p/identify's push service, a separate export that real deployments add (Helia's default
  // libp2p services include it): it tells connected peers of new addresses and protocols, 1 s debounced.
  if (push) services.identifyPush = identifyPush()
  if (autonat) services.autoNAT = autoNAT()
  if (relayService) services.relay = circuitRelayServer()
  // Stock @libp2p/dcutr. It hole-punches only to public addresses (isPublicAndDialable drops
  // loopback and private ones, in the unilateral upgrade and in CONNECT alike), so on loopback it
  // answers our exchange but never dials; the interop tests show what works with it unchanged.
  if (holePunch) services.dcutr = dcutr()
  if (dht) {
    services.dht = kadDHT({
      protocol: dhtProtocol,
      // Stock: clientMode undefined = client until the node has a public address (autoNAT). On
      // loopback it never gets one; a deployment on a private network configures servers the same way.
      clientMode: false,
      // Stock: removePrivateAddressesMapper, which drops loopback and private addresses; on loopback
      // those are all we have, as on any private-network deployment.
      peerInfoMapper: (p) => p
    })
  }

  return createLibp2p({
    ...(privateKey ? { privateKey } : {}),
    addresses: {
      listen: [
        ...(listen ? [`/ip4/127.0.0.1/tcp/${port}`] : []),
        ...(relayListen !== undefined ? [`${relayListen}/p2p-circuit`] : [])
      ]
    },
    transports: relayTransport || relayListen !== undefined ? [tcp(), circuitRelayTransport()] : [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // Benchmarks only (--bench-server, --bench-limits, bench-client): the stock limits (5 inbound
    // connections/s per host, 300 connections, 10 pending) would throttle a benchmark's thousands
    // of loopback dials, all from one host. Tests run the stock connection manager.
    ...(benchLimits
      ? {
          connectionManager: {
            inboundConnectionThreshold: 100_000,
            maxIncomingPendingConnections: 1_000,
            maxConnections: 10_000
          }
        }
      : {}),
    services
  })
}

export function selfAddrs (node) {
  return node.getMultiaddrs().map((ma) => ma.toString())
}

// Provide/findProviders key for topic T: CIDv1, codec raw (0x55), sha2-256 multihash of UTF-8(T).
export async function topicCid (topic) {
  if (typeof topic !== 'string') throw new Error('"topic" must be a string')
  return CID.createV1(RAW_CODEC, await sha256.digest(new TextEncoder().encode(topic)))
}
