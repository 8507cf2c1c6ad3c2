namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// A session's open streams by id, kept inline in the session and used under the session's lock. Most
/// sessions hold no stream or one at a time (a request, an identify exchange), so the first stream
/// sits in a field and a dictionary is made only for more, and dropped when they are gone: a
/// concurrent dictionary's buckets, lock array and tables, or even a plain dictionary's arrays, cost
/// hundreds of bytes per connection, which a node with thousands of mostly idle connections (a DHT
/// server, a simulation) pays on every one of them. Writers are rare (open, close); the read loop
/// looks up once per frame, uncontended.
/// </summary>
/// <remarks>
/// A mutable struct in a field of the session, so that it costs no object of its own (nor one to lock):
/// every member but <see cref="Count"/> expects the caller to hold the session's lock.
/// </remarks>
internal struct YamuxStreamTable
{
    private YamuxStream? _single;
    private Dictionary<uint, YamuxStream>? _more;
    private int _count;

    /// <summary>Streams in the table; may be read without the lock (a snapshot, as callers expect).</summary>
    public int Count => Volatile.Read(ref _count);

    public readonly bool Contains(uint id) => Find(id) is not null;

    public readonly YamuxStream? Find(uint id)
    {
        if (_single is { } single && single.Id == id) return single;
        return _more?.GetValueOrDefault(id);
    }

    /// <exception cref="ArgumentException">A stream with this id is in the table.</exception>
    public void Add(YamuxStream stream)
    {
        if (_single?.Id == stream.Id) throw new ArgumentException($"stream {stream.Id} is open already", nameof(stream));
        if (_single is null && (_more is null || !_more.ContainsKey(stream.Id))) _single = stream;
        else (_more ??= []).Add(stream.Id, stream);
        Volatile.Write(ref _count, _count + 1);
    }

    /// <summary>Removes <paramref name="stream"/> if it is the one under its id; false when it was gone already.</summary>
    public bool Remove(YamuxStream stream)
    {
        if (ReferenceEquals(_single, stream)) _single = null;
        else if (_more is null || !_more.TryGetValue(stream.Id, out var current) || !ReferenceEquals(current, stream) || !_more.Remove(stream.Id)) return false;
        if (_more is { Count: 0 }) _more = null;
        Volatile.Write(ref _count, _count - 1);
        return true;
    }

    /// <summary>The streams open now, for the session to close each outside the lock (closing removes it).</summary>
    public readonly YamuxStream[] Snapshot()
    {
        if (_count == 0) return [];
        var all = new YamuxStream[_count];
        if (_single is not null) all[0] = _single;
        _more?.Values.CopyTo(all, _single is null ? 0 : 1);
        return all;
    }

    public void Clear()
    {
        _single = null;
        _more = null;
        Volatile.Write(ref _count, 0);
    }
}
