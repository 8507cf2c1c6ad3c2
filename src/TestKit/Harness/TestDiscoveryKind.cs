namespace P2PInference.TestKit.Harness;

/// <summary>Which <see cref="Facilities.Discovery.IDiscovery"/> a <see cref="TestCluster"/>'s nodes get.</summary>
public enum TestDiscoveryKind
{
    /// <summary>A <see cref="Discovery.MockDht"/> per node on the cluster's <see cref="Discovery.MockDhtRegistry"/> (the default).</summary>
    MockDht,

    /// <summary>Whatever <see cref="TestClusterOptions.DiscoveryFactory"/> builds (e.g. the Kademlia DHT over each node's host).</summary>
    Custom,

    /// <summary>No discovery: <see cref="TestNode.Discovery"/> is null.</summary>
    None,
}
