using Microsoft.Extensions.Logging;

namespace P2PInference.Facilities.Store;

/// <summary>How a <see cref="FasterKeyValueStore"/> is opened.</summary>
public sealed class FasterStoreOptions
{
    /// <summary>Where the store lives. Null: in memory, nothing survives the process.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>When false, a missing <see cref="DataDirectory"/> is an error rather than a new, empty store.</summary>
    public bool CreateIfMissing { get; init; } = true;

    /// <summary>
    /// In-memory budget of FASTER's hybrid log (one slot of about 24 bytes per record version; the
    /// values themselves live on the managed heap while their records are in memory). Beyond it,
    /// older records are evicted to the data directory. Rounded down to a power of two.
    /// </summary>
    public long MemorySizeBytes { get; init; } = 64L << 20;

    /// <summary>Sizes FASTER's hash index (about one 64-byte bucket per four keys).</summary>
    public long ExpectedKeyCount { get; init; } = 1L << 20;

    /// <summary>Largest value accepted; sizes the write-ahead log's pages.</summary>
    public int MaxValueBytes { get; init; } = 4 << 20;

    /// <summary>Largest key accepted, in UTF-8 bytes.</summary>
    public int MaxKeyBytes { get; init; } = 16 << 10;

    /// <summary>
    /// How often the key-value state is checkpointed so that recovery replays only the log written
    /// since. Zero or negative: only on <see cref="FasterKeyValueStore.CheckpointAsync"/> and
    /// after <see cref="CheckpointAfterLogBytes"/>.
    /// </summary>
    public TimeSpan CheckpointInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>A checkpoint is also taken once this much write-ahead log has accumulated since the last.</summary>
    public long CheckpointAfterLogBytes { get; init; } = 256L << 20;

    /// <summary>Drives the periodic checkpoint.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Background checkpoint failures are reported here.</summary>
    public ILogger? Logger { get; init; }
}
