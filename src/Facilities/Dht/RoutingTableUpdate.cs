namespace P2PInference.Facilities.Dht;

/// <summary>What <see cref="RoutingTable.TryAdd"/> did with a peer.</summary>
public enum RoutingTableUpdate
{
    /// <summary>The peer is new in its bucket.</summary>
    Added,

    /// <summary>The peer was already there; it is now the most recently seen and its failures are forgiven.</summary>
    Refreshed,

    /// <summary>The bucket is full of live peers; the peer waits in the bucket's replacement cache.</summary>
    Queued,

    /// <summary>Our own id is never in the table.</summary>
    Self,
}
