namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// A session's open streams by id, under one lock. Most sessions hold no stream or one at a time (a
/// request, an identify exchange), so the first stream sits in a field and a dictionary is made only
/// for more, and dropped when they are gone: a concurrent dictionary's buckets, lock array and
/// tables, or even a plain dictionary's arrays, cost hundreds of bytes per connection, which a node
/// with thousands of mostly idle connections (a DHT server, a simulation) pays on every one of them.
/// Writers are rare (open, close); the read loop looks up once per frame, uncontended.
/// </summary>
internal sealed class YamuxStreamTable
{
    // The table itself is the lock (internal and sealed, so nothing else takes it): one object less per connection.
    private YamuxStream? _single;
    private Dictionary<uint, YamuxStream>? _more;
    private int _count;

    /// <summary>Streams in the table; read without the lock (a snapshot, as callers expect).</summary>
    public int Count => Volatile.Read(ref _count);

    public bool Contains(uint id) => Find(id) is not null;

    public YamuxStream? Find(uint id)
    {
        lock (this)
        {
            if (_single is { } single && single.Id == id) return single;
            return _more?.GetValueOrDefault(id);
        }
    }

    /// <exception cref="ArgumentException">A stream with this id is in the table.</exception>
    public void Add(YamuxStream stream)
    {
        lock (this)
        {
            if (_single?.Id == stream.Id) throw new ArgumentException($"stream {stream.Id} is open already", nameof(stream));
            if (_single is null && (_more is null || !_more.ContainsKey(stream.Id))) _single = stream;
            else (_more ??= []).Add(stream.Id, stream);
            Volatile.Write(ref _count, _count + 1);
        }
    }

    /// <summary>Removes <paramref name="stream"/> if it is the one under its id; false when it was gone already.</summary>
    public bool Remove(YamuxStream stream)
    {
        lock (this)
        {
            if (ReferenceEquals(_single, stream)) _single = null;
            else if (_more is null || !_more.TryGetValue(stream.Id, out var current) || !ReferenceEquals(current, stream) || !_more.Remove(stream.Id)) return false;
            if (_more is { Count: 0 }) _more = null;
            Volatile.Write(ref _count, _count - 1);
            return true;
        }
    }

    /// <summary>The streams open now, for the session to close each outside the lock (closing removes it).</summary>
    public YamuxStream[] Snapshot()
    {
        lock (this)
        {
            if (_count == 0) return [];
            var all = new YamuxStream[_count];
            if (_single is not null) all[0] = _single;
            _more?.Values.CopyTo(all, _single is null ? 0 : 1);
            return all;
        }
    }

    public void Clear()
    {
        lock (this)
        {
            _single = null;
            _more = null;
            Volatile.Write(ref _count, 0);
        }
    }
}
