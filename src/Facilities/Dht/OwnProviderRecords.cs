using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// The keys this node announces itself as a provider of, and for each the peers it has handed the
/// record to since its last announcement. It decides which newly learned peers must get a copy:
/// the Kademlia paper's store replication, limited to our own records (an ADD_PROVIDER is only
/// accepted from the provider itself, so other nodes' records cannot be replicated for them).
/// </summary>
/// <remarks>
/// Without it a record announced while the network was small stays on the few peers that were up;
/// once more than k servers run, a GET_PROVIDERS lookup converges on the k closest to the key and
/// misses it until the next re-announcement. Thread-safe (one lock; operations are short).
/// </remarks>
public sealed class OwnProviderRecords
{
    private readonly Dictionary<byte[], Announced> _keys = new(ByteKeyComparer.Instance);
    private readonly Lock _lock = new();

    public int Count
    {
        get
        {
            lock (_lock) return _keys.Count;
        }
    }

    public void Add(byte[] key, string topic)
    {
        lock (_lock)
        {
            if (!_keys.ContainsKey(key)) _keys[key] = new Announced(topic, KadId.FromKey(key));
        }
    }

    public bool Remove(byte[] key)
    {
        lock (_lock) return _keys.Remove(key);
    }

    public bool Contains(byte[] key)
    {
        lock (_lock) return _keys.ContainsKey(key);
    }

    public byte[][] Keys
    {
        get
        {
            lock (_lock) return _keys.Keys.ToArray();
        }
    }

    public string[] Topics
    {
        get
        {
            lock (_lock) return _keys.Values.Select(a => a.Topic).ToArray();
        }
    }

    /// <summary>An announcement of <paramref name="key"/> starts: its lookup reaches the closest peers itself, so replication pauses.</summary>
    public void BeginAnnouncement(byte[] key)
    {
        lock (_lock)
        {
            if (_keys.TryGetValue(key, out var announced)) announced.Announcing++;
        }
    }

    /// <summary>An announcement ended; <paramref name="holders"/> are the peers it sent the record to.</summary>
    public void EndAnnouncement(byte[] key, IEnumerable<PeerId> holders)
    {
        lock (_lock)
        {
            if (!_keys.TryGetValue(key, out var announced)) return;
            announced.Announcing--;
            announced.Holders.Clear();
            announced.Holders.UnionWith(holders);
        }
    }

    /// <summary>
    /// The keys whose record <paramref name="peer"/>, just added to <paramref name="table"/>, should get
    /// now: it is among the <paramref name="k"/> closest to the key we know, does not hold it yet, and
    /// no announcement of the key is running. The peer is counted as holding them from here on.
    /// </summary>
    public IReadOnlyList<byte[]> ClaimKeysFor(PeerId peer, RoutingTable table, int k)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ArgumentNullException.ThrowIfNull(table);
        KeyValuePair<byte[], Announced>[] candidates;
        lock (_lock)
        {
            if (_keys.Count == 0) return [];
            candidates = _keys.Where(e => e.Value.Announcing == 0 && !e.Value.Holders.Contains(peer)).ToArray();
        }
        List<byte[]>? due = null;
        foreach (var (key, announced) in candidates)
        {
            // Outside the lock: NearestPeers sorts the table.
            if (!table.NearestPeers(announced.Id, k).Contains(peer)) continue;
            lock (_lock)
            {
                if (announced.Announcing != 0 || !_keys.ContainsKey(key) || !announced.Holders.Add(peer)) continue;
            }
            (due ??= []).Add(key);
        }
        return due ?? (IReadOnlyList<byte[]>)[];
    }

    private sealed class Announced(string topic, KadId id)
    {
        public string Topic { get; } = topic;
        public KadId Id { get; } = id;
        public int Announcing { get; set; }
        public HashSet<PeerId> Holders { get; } = [];
    }
}
