namespace P2PInference.Facilities.Dht;

/// <summary>
/// Values stored by PUT_VALUE, bounded in count and value size, expiring a TTL after they arrive.
/// A full store refuses new keys (after dropping expired ones) and still accepts updates.
/// </summary>
public sealed class RecordStore
{
    private readonly Dictionary<byte[], DhtRecord> _records = new(ByteKeyComparer.Instance);
    private readonly TimeProvider _timeProvider;
    private readonly TimeSpan _ttl;
    private readonly int _maxRecords;
    private readonly int _maxValueSize;
    private readonly Lock _lock = new();

    public RecordStore(TimeProvider timeProvider, TimeSpan ttl, int maxRecords, int maxValueSize)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRecords, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxValueSize);
        _timeProvider = timeProvider;
        _ttl = ttl;
        _maxRecords = maxRecords;
        _maxValueSize = maxValueSize;
    }

    public int Count
    {
        get
        {
            lock (_lock) return _records.Count;
        }
    }

    /// <summary>Stores the value; false when it is too large or the store is full of other keys.</summary>
    public bool Put(byte[] key, byte[] value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        if (value.Length > _maxValueSize) return false;
        var now = _timeProvider.GetUtcNow();
        lock (_lock)
        {
            if (!_records.ContainsKey(key) && _records.Count >= _maxRecords)
            {
                SweepLocked(now);
                if (_records.Count >= _maxRecords) return false;
            }
            _records[key] = new DhtRecord(key, value, now, now + _ttl);
            return true;
        }
    }

    public DhtRecord? Get(byte[] key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var now = _timeProvider.GetUtcNow();
        lock (_lock)
        {
            if (!_records.TryGetValue(key, out var record)) return null;
            if (record.Expires > now) return record;
            _records.Remove(key);
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
        foreach (var (key, record) in _records)
        {
            if (record.Expires <= now && _records.Remove(key)) removed++;
        }
        return removed;
    }
}
