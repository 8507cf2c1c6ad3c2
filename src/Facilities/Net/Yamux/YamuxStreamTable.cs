namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// A session's open streams by id. A plain dictionary under one lock rather than a concurrent one:
/// a session usually holds a handful of streams, and a concurrent dictionary's buckets, lock array
/// and tables cost several hundred bytes per connection, which a node with thousands of mostly idle
/// connections (a DHT server, a simulation) pays on every one of them. Writers are rare (open,
/// close); the read loop looks up once per frame, uncontended.
/// </summary>
internal sealed class YamuxStreamTable
{
    // The dictionary allocates its arrays on the first insert, so a session that never opens a stream pays little.
    private readonly Dictionary<uint, YamuxStream> _streams = [];
    private int _count;

    /// <summary>Streams in the table; read without the lock (a snapshot, as callers expect).</summary>
    public int Count => Volatile.Read(ref _count);

    public bool Contains(uint id)
    {
        lock (_streams) return _streams.ContainsKey(id);
    }

    public YamuxStream? Find(uint id)
    {
        lock (_streams) return _streams.GetValueOrDefault(id);
    }

    public void Add(YamuxStream stream)
    {
        lock (_streams)
        {
            _streams.Add(stream.Id, stream);
            Volatile.Write(ref _count, _streams.Count);
        }
    }

    /// <summary>Removes <paramref name="stream"/> if it is the one under its id; false when it was gone already.</summary>
    public bool Remove(YamuxStream stream)
    {
        lock (_streams)
        {
            if (!_streams.TryGetValue(stream.Id, out var current) || !ReferenceEquals(current, stream)) return false;
            _streams.Remove(stream.Id);
            Volatile.Write(ref _count, _streams.Count);
            return true;
        }
    }

    /// <summary>The streams open now, for the session to close each outside the lock (closing removes it).</summary>
    public YamuxStream[] Snapshot()
    {
        lock (_streams) return _streams.Count == 0 ? [] : [.. _streams.Values];
    }

    public void Clear()
    {
        lock (_streams)
        {
            _streams.Clear();
            Volatile.Write(ref _count, 0);
        }
    }
}
