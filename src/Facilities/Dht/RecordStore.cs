using System.Diagnostics;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Values stored by PUT_VALUE, bounded in count, value size and bytes in all, expiring a TTL after they arrive.
/// A full store refuses new keys (after dropping expired ones) and still accepts updates. Each peer
/// may hold at most <c>maxRecordsPerPeer</c> of the records (counted for the peer whose put is stored),
/// so one identity cannot fill the store: every server accepts PUT_VALUE, which the product itself
/// does not use (kept for js and go peers). Nor can one machine cycling identities: the records from one
/// origin may take at most <c>maxBytesPerOrigin</c> (<see cref="OriginShares"/>).
/// </summary>
/// <remarks>
/// A write about to be refused scans the store for expired records first only as often as
/// <see cref="RefusalSweepGate"/> allows, so a flood of refused puts does not scan it for each one.
/// </remarks>
public sealed class RecordStore
{
    private readonly Dictionary<byte[], Entry> _records = new(ByteKeyComparer.Instance);
    private readonly Dictionary<PeerId, int> _recordsByPeer = [];
    private readonly RefusalSweepGate _refusalSweeps = new();
    private readonly TimeProvider _timeProvider;
    private readonly TimeSpan _ttl;
    private readonly int _maxRecords;
    private readonly int _maxValueSize;
    private readonly int _maxRecordsPerPeer;
    private readonly long _maxBytes;
    private readonly OriginShares _origins;
    private readonly Lock _lock = new();
    private long _bytes;

    public RecordStore(TimeProvider timeProvider, TimeSpan ttl, int maxRecords, int maxValueSize, int maxRecordsPerPeer = DefaultMaxRecordsPerPeer,
        long maxBytes = DefaultMaxBytes, long maxBytesPerOrigin = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRecords, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxValueSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRecordsPerPeer, 1);
        _timeProvider = timeProvider;
        _ttl = ttl;
        _maxRecords = maxRecords;
        _maxValueSize = maxValueSize;
        _maxRecordsPerPeer = maxRecordsPerPeer;
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        _maxBytes = maxBytes;
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytesPerOrigin, 1);
        _origins = new OriginShares(maxBytesPerOrigin);
    }

    /// <summary>A peer publishes a few names of its own (an IPNS-style use); a hundred is ample, and a hundredth of the default store.</summary>
    public const int DefaultMaxRecordsPerPeer = 100;

    /// <summary>
    /// The count and size caps alone allow 10,000 values of 16 KiB (160 MiB); this holds the store to
    /// 64 MiB, thousands of full-size values or hundreds of thousands of small ones.
    /// </summary>
    public const long DefaultMaxBytes = 64L << 20;

    // What a record's objects take beyond its key and value (the two arrays' headers, the record and its
    // dictionary entry), measured with GC.GetTotalMemory on .NET 10 x64: an estimate that errs high.
    private const int RecordOverhead = 192;

    /// <summary>An estimate of the memory the records take, which <c>maxBytes</c> bounds: a diagnostic.</summary>
    public long Bytes
    {
        get
        {
            lock (_lock) return _bytes;
        }
    }

    /// <summary>The bytes the records from <paramref name="origin"/> are counted as against its share: a diagnostic.</summary>
    public long BytesFrom(string origin)
    {
        ArgumentNullException.ThrowIfNull(origin);
        lock (_lock) return _origins.Of(origin);
    }

    /// <summary>Origins that hold records: a diagnostic.</summary>
    public int OriginCount
    {
        get
        {
            lock (_lock) return _origins.Count;
        }
    }

    public int Count
    {
        get
        {
            lock (_lock) return _records.Count;
        }
    }

    /// <summary>Whole-store scans for expired records so far, timed (<see cref="Sweep"/>) or before a refusal: a diagnostic.</summary>
    public long Sweeps
    {
        get
        {
            lock (_lock) return _refusalSweeps.Sweeps;
        }
    }

    /// <summary>
    /// Stores the value, put by <paramref name="from"/> (null: by this node, which no quota limits); false
    /// when it is too large, the store is full of other keys or bytes, or <paramref name="from"/> holds its quota of
    /// records already (updating one of its own is not a new one), or <paramref name="origin"/> its share of bytes.
    /// </summary>
    /// <param name="origin">
    /// Where the put came from (<see cref="Addressing.AddressOrigin"/>), whose share it is counted against;
    /// null for none (our own, or a sender whose address says nothing about it).
    /// </param>
    public bool Put(byte[] key, byte[] value, PeerId? from = null, string? origin = null)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        if (value.Length > _maxValueSize) return false;
        var cost = CostOf(key, value);
        var now = _timeProvider.GetUtcNow();
        lock (_lock)
        {
            var exists = _records.TryGetValue(key, out var existing);
            var counted = from is not null && (!exists || existing.From != from);
            if (counted && _recordsByPeer.GetValueOrDefault(from!) >= _maxRecordsPerPeer)
            {
                if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                if (_recordsByPeer.GetValueOrDefault(from!) >= _maxRecordsPerPeer) return false;
                exists = _records.TryGetValue(key, out existing);
            }
            if (!exists && _records.Count >= _maxRecords)
            {
                if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                if (_records.Count >= _maxRecords) return false;
            }
            if (!_origins.Admits(origin, cost, ChargeReplaced(exists, existing, origin)))
            {
                if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                exists = _records.TryGetValue(key, out existing);
                if (!_origins.Admits(origin, cost, ChargeReplaced(exists, existing, origin))) return false;
            }
            if (BytesAfter(exists, existing, cost) > _maxBytes)
            {
                if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                exists = _records.TryGetValue(key, out existing);
                if (BytesAfter(exists, existing, cost) > _maxBytes) return false;
            }
            if (exists) Forget(existing);
            if (from is not null) _recordsByPeer[from] = _recordsByPeer.GetValueOrDefault(from) + 1;
            var record = new DhtRecord(key, value, now, now + _ttl);
            _records[key] = new Entry(record, from, origin);
            _bytes += cost;
            _origins.Charge(origin, cost);
            Debug.Assert(_bytes <= _maxBytes, "the byte check above admits only what fits");
            _refusalSweeps.NoteExpiry(record.Expires);
            return true;
        }
    }

    public DhtRecord? Get(byte[] key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var now = _timeProvider.GetUtcNow();
        lock (_lock)
        {
            if (!_records.TryGetValue(key, out var entry)) return null;
            if (entry.Record.Expires > now) return entry.Record;
            _records.Remove(key);
            Forget(entry);
            return null;
        }
    }

    public int Sweep()
    {
        lock (_lock) return SweepLocked(_timeProvider.GetUtcNow());
    }

    private int SweepLocked(DateTimeOffset now)
    {
        var removed = 0;
        var earliest = DateTimeOffset.MaxValue;
        foreach (var (key, entry) in _records)
        {
            if (entry.Record.Expires <= now && _records.Remove(key))
            {
                removed++;
                Forget(entry);
            }
            else if (entry.Record.Expires < earliest)
            {
                earliest = entry.Record.Expires;
            }
        }
        _refusalSweeps.Swept(now, earliest);
        return removed;
    }

    /// <summary>The store's bytes once a record of <paramref name="cost"/> replaces <paramref name="existing"/>, if it <paramref name="exists"/>.</summary>
    private long BytesAfter(bool exists, Entry existing, long cost) =>
        _bytes + cost - (exists ? CostOf(existing.Record.Key, existing.Record.Value) : 0);

    private static long ChargeReplaced(bool exists, Entry existing, string? origin) =>
        exists && existing.Origin == origin ? CostOf(existing.Record.Key, existing.Record.Value) : 0;

    private static long CostOf(byte[] key, byte[] value) => RecordOverhead + (long)key.Length + value.Length;

    private void Forget(Entry entry)
    {
        var cost = CostOf(entry.Record.Key, entry.Record.Value);
        _bytes -= cost;
        Debug.Assert(_bytes >= 0, "a record's bytes are given back once");
        _origins.Release(entry.Origin, cost);
        var from = entry.From;
        if (from is null) return;
        var count = _recordsByPeer.GetValueOrDefault(from);
        if (count > 1) _recordsByPeer[from] = count - 1;
        else _recordsByPeer.Remove(from);
    }

    /// <summary>A record, the peer whose put stored it and the origin it came from (both null for our own).</summary>
    private readonly record struct Entry(DhtRecord Record, PeerId? From, string? Origin);
}
