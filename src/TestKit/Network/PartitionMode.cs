namespace P2PInference.TestKit.Network;

/// <summary>What a partition does to traffic between the two sides.</summary>
public enum PartitionMode
{
    /// <summary>New dials between the sides fail; connections already open keep working.</summary>
    FailNewDials,

    /// <summary>
    /// New dials fail and open connections stop delivering in the partitioned direction: bytes queue
    /// (up to the connection's buffer, then writers block) and are delivered in order once healed.
    /// </summary>
    Stall,

    /// <summary>
    /// New dials fail and open connections between the sides are reset at once: reads and writes on
    /// both ends throw <see cref="IOException"/>.
    /// </summary>
    Reset,
}
