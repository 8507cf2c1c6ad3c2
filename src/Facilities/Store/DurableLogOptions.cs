namespace P2PInference.Facilities.Store;

/// <summary>How a <see cref="DurableLog"/> is opened.</summary>
public sealed class DurableLogOptions
{
    /// <summary>The log's directory (required: a durable log needs a place to be durable).</summary>
    public required string Directory { get; init; }

    /// <summary>When false, a missing <see cref="Directory"/> is an error rather than a new, empty log.</summary>
    public bool CreateIfMissing { get; init; } = true;

    /// <summary>Largest entry accepted; sizes the log's pages.</summary>
    public int MaxEntryBytes { get; init; } = 1 << 20;
}
