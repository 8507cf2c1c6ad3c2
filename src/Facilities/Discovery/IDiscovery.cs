namespace P2PInference.Facilities.Discovery;

/// <summary>
/// Finds peers by topic. The real implementation is the Kademlia DHT; the TestKit's mock DHT is an
/// instant, deterministic twin. Both are held to the same conformance suite.
/// </summary>
public interface IDiscovery
{
    /// <summary>Announces this node as a provider of <paramref name="topic"/> and keeps re-announcing it until unannounced.</summary>
    Task AnnounceAsync(string topic, CancellationToken cancellationToken);

    /// <summary>Stops announcing <paramref name="topic"/> and withdraws the record where the implementation can.</summary>
    Task UnannounceAsync(string topic, CancellationToken cancellationToken);

    /// <summary>The providers of <paramref name="topic"/> with their addresses; empty (not an error) when there are none.</summary>
    Task<IReadOnlyList<DiscoveredPeer>> LookupAsync(string topic, CancellationToken cancellationToken);

    /// <summary>Completes once the node has joined the network (e.g. bootstrapped its routing table).</summary>
    Task WaitUntilJoinedAsync(CancellationToken cancellationToken);
}
