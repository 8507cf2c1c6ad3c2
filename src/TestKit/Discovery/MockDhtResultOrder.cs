namespace P2PInference.TestKit.Discovery;

/// <summary>The order in which the mock DHT returns the providers of a topic.</summary>
public enum MockDhtResultOrder
{
    /// <summary>
    /// A permutation fixed by the registry's seed and the topic: the same for every lookup of that
    /// topic under that seed, different under another seed. Code that depends on an order no real
    /// DHT guarantees fails for some seed, and the seed replays it.
    /// </summary>
    Seeded = 0,

    /// <summary>
    /// Closest first by Kademlia XOR distance between SHA-256 of the topic key and SHA-256 of the
    /// provider's PeerId bytes, as a DHT walk tends to meet them.
    /// </summary>
    XorDistance = 1,
}
