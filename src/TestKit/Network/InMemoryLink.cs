namespace P2PInference.TestKit.Network;

/// <summary>
/// The conditions and counters of one directed link (<see cref="From"/> → <see cref="To"/>) of an
/// <see cref="InMemoryNetwork"/>. Conditions apply to bytes written from now on by every connection
/// between the two nodes, in this direction; bytes already in flight keep the timing they were given.
/// Random choices (jitter, slice sizes, corrupted bits) come from a per-connection generator derived
/// from the network's seed, so a run replays exactly for the same seed and the same order of dials.
/// </summary>
public sealed class InMemoryLink
{
    private readonly object _gate = new();
    // A list, not a set: a link carries one or two connections at a time, and a simulation keeps a
    // link for every pair of nodes that ever talked, so a set's arrays would be paid tens of thousands of times.
    private readonly List<MemoryFlow> _flows = [];
    private readonly InMemoryNetwork _network;
    private TimeSpan _latency;
    private TimeSpan _jitter;
    private long _bandwidth;
    private int _maxSliceSize;
    private double _corruptionProbability;
    private long? _corruptByteAt;
    private long? _resetAfterBytes;
    private bool _held;
    private PartitionMode? _partition;
    private long _busyUntil;
    private volatile bool _isClean = true;
    private volatile bool _isBlocked;
    private long _bytesWritten;
    private long _writes;
    private long _bytesRead;
    private long _connectionsOpened;
    private volatile bool _digestWrites;
    private ulong _writeDigest = FnvOffset;
    private const ulong FnvOffset = 0xcbf29ce484222325UL;

    internal InMemoryLink(InMemoryNetwork network, string from, string to)
    {
        _network = network;
        From = from;
        To = to;
    }

    public string From { get; }
    public string To { get; }

    /// <summary>Each write is delivered this long after it was made (plus any queueing for bandwidth).</summary>
    public TimeSpan Latency
    {
        get => _latency;
        set => Set(ref _latency, NonNegative(value));
    }

    /// <summary>
    /// Each write's latency varies uniformly within ±<see cref="Jitter"/> (never below zero). Order is
    /// preserved: a write is never delivered before one written earlier on the same connection.
    /// </summary>
    public TimeSpan Jitter
    {
        get => _jitter;
        set => Set(ref _jitter, NonNegative(value));
    }

    /// <summary>
    /// Bytes per second, shared by all connections on this directed link; 0 means unlimited. A write of
    /// n bytes occupies the link for n / bandwidth seconds after the previous write finished.
    /// </summary>
    public long BandwidthBytesPerSecond
    {
        get => _bandwidth;
        set => Set(ref _bandwidth, value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value)));
    }

    /// <summary>
    /// When above 0, each write is delivered as pieces of 1..<see cref="MaxSliceSize"/> bytes (seeded), and
    /// each read returns at most one piece — every parser sees its input split at every possible point.
    /// </summary>
    public int MaxSliceSize
    {
        get => _maxSliceSize;
        set => Set(ref _maxSliceSize, value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value)));
    }

    /// <summary>The chance, per byte, that one of its bits is flipped on the way (seeded); 0 disables.</summary>
    public double CorruptionProbability
    {
        get => _corruptionProbability;
        set => Set(ref _corruptionProbability, value is >= 0 and <= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value)));
    }

    /// <summary>
    /// Flips one (seeded) bit of the byte at this offset of every connection's stream in this direction,
    /// counting from the connection's first byte; null disables.
    /// </summary>
    public long? CorruptByteAt
    {
        get => _corruptByteAt;
        set => Set(ref _corruptByteAt, value is null or >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value)));
    }

    /// <summary>
    /// A data limit per connection and direction: once this many bytes have been sent, the connection is
    /// reset. The receiver first reads those bytes, then its reads throw <see cref="IOException"/>; the
    /// write that crosses the limit throws, and so does everything after it on both ends. Null disables.
    /// </summary>
    public long? ResetAfterBytes
    {
        get => _resetAfterBytes;
        set => Set(ref _resetAfterBytes, value is null or >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value)));
    }

    /// <summary>Whether the link is clogged by <see cref="Hold"/>.</summary>
    public bool IsHeld => _held;

    /// <summary>The most severe partition cutting this direction, if any.</summary>
    public PartitionMode? Partition => _partition;

    /// <summary>
    /// When set, every byte written on this link from then on is folded, in write order, into
    /// <see cref="WriteDigest"/>. Two runs of one seed must put the same bytes on the wire: ephemeral
    /// keys, nonces and ciphertext included. Off by default, as it reads every byte.
    /// </summary>
    public bool DigestWrites
    {
        get => _digestWrites;
        set => _digestWrites = value;
    }

    /// <summary>An FNV-1a hash of the bytes written while <see cref="DigestWrites"/> was set.</summary>
    public ulong WriteDigest
    {
        get
        {
            lock (_gate) return _writeDigest;
        }
    }

    /// <summary>Bytes written into this link by senders (including ones later dropped).</summary>
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    /// <summary>Write calls made by senders on this link.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Bytes handed to receivers' reads.</summary>
    public long BytesRead => Interlocked.Read(ref _bytesRead);

    /// <summary>Connections ever opened between the two nodes whose traffic uses this direction.</summary>
    public long ConnectionsOpened => Interlocked.Read(ref _connectionsOpened);

    /// <summary>Clogs the link: bytes queue (up to each connection's buffer) and nothing is delivered until <see cref="Release"/>.</summary>
    public void Hold()
    {
        lock (_gate) _held = true;
        Update();
    }

    /// <summary>Unclogs the link: queued bytes are delivered in order (those whose latency has passed at once).</summary>
    public void Release()
    {
        lock (_gate) _held = false;
        Update();
        Kick();
    }

    /// <summary>Resets every open connection between the two nodes (in either direction of dialing).</summary>
    /// <returns>How many connections were reset.</returns>
    public int ResetConnections() => _network.ResetConnections(From, To);

    /// <summary>Removes every fault: no latency, jitter, bandwidth limit, slicing, corruption, data limit or hold. Partitions stay.</summary>
    public void ClearFaults()
    {
        lock (_gate)
        {
            _latency = _jitter = TimeSpan.Zero;
            _bandwidth = 0;
            _maxSliceSize = 0;
            _corruptionProbability = 0;
            _corruptByteAt = _resetAfterBytes = null;
            _held = false;
        }
        Update();
        Kick();
    }

    public override string ToString() => $"{From} -> {To}";

    /// <summary>No fault at all: a write goes straight into the receiver's buffer.</summary>
    internal bool IsClean => _isClean;

    /// <summary>Held or stalled by a partition: nothing moves from in flight to the receiver.</summary>
    internal bool IsBlocked => _isBlocked;

    internal void SetPartition(PartitionMode? mode)
    {
        bool wasBlocked;
        lock (_gate)
        {
            if (_partition == mode) return;
            wasBlocked = _isBlocked;
            _partition = mode;
        }
        Update();
        if (wasBlocked && !_isBlocked) Kick();
    }

    internal void Attach(MemoryFlow flow)
    {
        lock (_gate) _flows.Add(flow);
    }

    internal void Detach(MemoryFlow flow)
    {
        lock (_gate) _flows.Remove(flow);
    }

    internal long NextConnectionIndex() => Interlocked.Increment(ref _connectionsOpened) - 1;

    internal void CountWrite(ReadOnlySpan<byte> bytes)
    {
        Interlocked.Increment(ref _writes);
        Interlocked.Add(ref _bytesWritten, bytes.Length);
        if (!_digestWrites) return;
        lock (_gate)
        {
            var h = _writeDigest;
            foreach (var b in bytes) h = (h ^ b) * 0x100000001b3UL;
            _writeDigest = h;
        }
    }

    internal void CountRead(int bytes) => Interlocked.Add(ref _bytesRead, bytes);

    /// <summary>Books the link's bandwidth for <paramref name="bytes"/> and returns when they finish crossing it.</summary>
    internal long ReserveBandwidth(TimeProvider time, long now, int bytes)
    {
        lock (_gate)
        {
            if (_bandwidth <= 0) return now;
            var start = Math.Max(_busyUntil, now);
            // Round up so that even one byte over a fast link takes a tick: time must pass for it to arrive.
            var ticks = ((bytes * TimeSpan.TicksPerSecond) + _bandwidth - 1) / _bandwidth;
            _busyUntil = start + MemoryFlow.ToTimestamp(time, TimeSpan.FromTicks(ticks));
            return _busyUntil;
        }
    }

    private void Set<T>(ref T field, T value)
    {
        lock (_gate) field = value;
        Update();
    }

    private void Update()
    {
        lock (_gate)
        {
            _isBlocked = _held || _partition == PartitionMode.Stall;
            _isClean = !_isBlocked
                && _latency == TimeSpan.Zero && _jitter == TimeSpan.Zero && _bandwidth == 0
                && _maxSliceSize == 0 && _corruptionProbability == 0
                && _corruptByteAt is null && _resetAfterBytes is null;
        }
    }

    private void Kick()
    {
        MemoryFlow[] flows;
        lock (_gate) flows = [.. _flows];
        foreach (var flow in flows) flow.Kick();
    }

    private static TimeSpan NonNegative(TimeSpan value) =>
        value >= TimeSpan.Zero ? value : throw new ArgumentOutOfRangeException(nameof(value), "must not be negative");
}
