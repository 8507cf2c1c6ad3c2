using System.Buffers.Binary;
using System.Security.Cryptography;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;

namespace P2PInference.TestKit.Discovery;

/// <summary>
/// The shared in-memory "DHT" behind the mock: one per test, with one <see cref="MockDht"/> node per
/// peer. Records behave as provider records in a real DHT do: each lives <see cref="RecordTtl"/> from
/// its last (re-)announce, measured on the <see cref="TimeProvider"/>; a live node re-announces every
/// <see cref="ReannounceInterval"/>; a crashed node's records linger until they expire.
/// </summary>
/// <remarks>
/// Knobs (<see cref="LookupDelay"/>, <see cref="JoinDelay"/>, <see cref="MissingRecords"/>,
/// <see cref="StaleRecords"/>, <see cref="FailLookups"/>, <see cref="ResultOrder"/>) may be changed at
/// any time; a change applies to operations that start afterwards (the TTL to every check). All members
/// are thread-safe.
/// </remarks>
public sealed class MockDhtRegistry
{
    private readonly object _gate = new();
    private readonly Dictionary<string, Dictionary<PeerId, Record>> _records = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _lookupsByTopic = new(StringComparer.Ordinal);
    private readonly Dictionary<PeerId, MockDht> _liveNodes = [];
    private readonly byte[] _seedBytes = new byte[4];
    private int _totalLookups;
    private TimeSpan _recordTtl = TimeSpan.FromMinutes(10);
    private TimeSpan _reannounceInterval = TimeSpan.FromMinutes(5);
    private TimeSpan _lookupDelay;
    private TimeSpan _joinDelay;

    /// <param name="time">The clock records expire on and timers run on; the system clock when null.</param>
    /// <param name="seed">Fixes the <see cref="MockDhtResultOrder.Seeded"/> order; pass a test's seed (e.g. <c>TestSeed.Choose()</c>).</param>
    public MockDhtRegistry(TimeProvider? time = null, int seed = 0)
    {
        TimeProvider = time ?? TimeProvider.System;
        Seed = seed;
        BinaryPrimitives.WriteInt32LittleEndian(_seedBytes, seed);
    }

    public TimeProvider TimeProvider { get; }

    public int Seed { get; }

    /// <summary>How long a record lives after its last (re-)announce; 10 minutes by default.</summary>
    public TimeSpan RecordTtl
    {
        get => Read(ref _recordTtl);
        set => Write(ref _recordTtl, RequirePositive(value));
    }

    /// <summary>
    /// How often a live node re-announces each of its topics; 5 minutes by default. Read when a topic is
    /// announced. Keep it below <see cref="RecordTtl"/>, or records lapse between re-announces (which a
    /// test may want).
    /// </summary>
    public TimeSpan ReannounceInterval
    {
        get => Read(ref _reannounceInterval);
        set => Write(ref _reannounceInterval, RequirePositive(value));
    }

    /// <summary>How much time (on <see cref="TimeProvider"/>) a lookup takes; zero (instant) by default.</summary>
    public TimeSpan LookupDelay
    {
        get => Read(ref _lookupDelay);
        set => Write(ref _lookupDelay, RequireNotNegative(value));
    }

    /// <summary>How long after its creation a node reports it has joined; zero (at once) by default.</summary>
    public TimeSpan JoinDelay
    {
        get => Read(ref _joinDelay);
        set => Write(ref _joinDelay, RequireNotNegative(value));
    }

    /// <summary>
    /// Records a lookup fails to find, as when the DHT nodes holding them are unreachable: a lookup
    /// omits each provider for which this returns true. Null (nothing missing) by default. Per topic:
    /// test <see cref="MockDhtLookup.Topic"/>; per requester: <see cref="MockDhtLookup.Requester"/>.
    /// </summary>
    public Func<MockDhtLookup, PeerId, bool>? MissingRecords { get; set; }

    /// <summary>
    /// When true, withdrawing a record (<see cref="MockDht.UnannounceAsync"/>, graceful
    /// <see cref="MockDht.DisposeAsync"/>) only stops re-announcing it and the record lingers until it
    /// expires, as in libp2p Kademlia, which has no message to remove a provider record. False by
    /// default: withdrawn records vanish at once. A crashed node's records always linger until expiry.
    /// </summary>
    public bool StaleRecords { get; set; }

    /// <summary>
    /// Simulates DHT errors: called for each lookup (after <see cref="LookupDelay"/>); a non-null
    /// exception is thrown to the caller instead of the result, e.g.
    /// <c>registry.FailLookups = _ =&gt; new MockDhtLookupException()</c>. Null by default.
    /// </summary>
    public Func<MockDhtLookup, Exception?>? FailLookups { get; set; }

    /// <summary>The order lookups return providers in; <see cref="MockDhtResultOrder.Seeded"/> by default.</summary>
    public MockDhtResultOrder ResultOrder { get; set; } = MockDhtResultOrder.Seeded;

    /// <summary>How many lookups all nodes have started (failed and cancelled ones included).</summary>
    public int TotalLookupCount
    {
        get
        {
            lock (_gate)
            {
                return _totalLookups;
            }
        }
    }

    /// <summary>The nodes neither crashed nor disposed.</summary>
    public IReadOnlyList<MockDht> LiveNodes
    {
        get
        {
            lock (_gate)
            {
                return [.. _liveNodes.Values];
            }
        }
    }

    /// <summary>
    /// A node for <paramref name="peer"/>, reachable at <paramref name="addresses"/>. A peer may have
    /// one live node at a time; after a crash or dispose, creating it again is a restart.
    /// </summary>
    /// <exception cref="InvalidOperationException">A live node already has this PeerId.</exception>
    public MockDht CreateNode(PeerId peer, IReadOnlyList<Multiaddress> addresses)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ArgumentNullException.ThrowIfNull(addresses);
        lock (_gate)
        {
            if (_liveNodes.ContainsKey(peer))
            {
                throw new InvalidOperationException($"Peer {peer} already has a live node on this registry.");
            }

            var node = new MockDht(this, peer, [.. addresses], _joinDelay);
            _liveNodes.Add(peer, node);
            return node;
        }
    }

    /// <summary>
    /// The unexpired records of <paramref name="topic"/>, in <see cref="ResultOrder"/>: the truth,
    /// without <see cref="MissingRecords"/> or <see cref="FailLookups"/>, and not counted as a lookup.
    /// </summary>
    public IReadOnlyList<DiscoveredPeer> Providers(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        lock (_gate)
        {
            return Ordered(topic, LiveRecordsLocked(topic));
        }
    }

    /// <summary>How many lookups of <paramref name="topic"/> all nodes have started.</summary>
    public int LookupCount(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        lock (_gate)
        {
            return _lookupsByTopic.GetValueOrDefault(topic);
        }
    }

    /// <summary>
    /// Stores a record nobody re-announces, e.g. for a peer that is gone without a node here: lookups
    /// find it until <paramref name="ttl"/> (default <see cref="RecordTtl"/>) has passed, unless a live
    /// node of the same peer announces the topic, which replaces it.
    /// </summary>
    public void InjectStaleRecord(string topic, PeerId peer, IReadOnlyList<Multiaddress> addresses, TimeSpan? ttl = null)
    {
        ArgumentNullException.ThrowIfNull(topic);
        ArgumentNullException.ThrowIfNull(peer);
        ArgumentNullException.ThrowIfNull(addresses);
        if (ttl is { } given)
        {
            _ = RequirePositive(given);
        }

        lock (_gate)
        {
            PutLocked(topic, new Record(peer, [.. addresses], TimeProvider.GetTimestamp(), ttl));
        }
    }

    /// <summary>Removes every record of <paramref name="topic"/> at once (live nodes put theirs back when they next re-announce).</summary>
    public void DropRecords(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        lock (_gate)
        {
            _ = _records.Remove(topic);
        }
    }

    internal object Gate => _gate;

    internal void PublishLocked(string topic, MockDht node) =>
        PutLocked(topic, new Record(node.PeerId, node.Addresses, TimeProvider.GetTimestamp(), null));

    internal void WithdrawLocked(string topic, PeerId peer)
    {
        if (StaleRecords || !_records.TryGetValue(topic, out var byPeer))
        {
            return;
        }

        _ = byPeer.Remove(peer);
        if (byPeer.Count == 0)
        {
            _ = _records.Remove(topic);
        }
    }

    internal void RemoveLiveLocked(MockDht node)
    {
        if (_liveNodes.TryGetValue(node.PeerId, out var live) && ReferenceEquals(live, node))
        {
            _ = _liveNodes.Remove(node.PeerId);
        }
    }

    internal MockDhtLookup BeginLookup(PeerId requester, string topic)
    {
        lock (_gate)
        {
            _totalLookups++;
            _lookupsByTopic[topic] = _lookupsByTopic.GetValueOrDefault(topic) + 1;
            return new MockDhtLookup(requester, topic, _totalLookups);
        }
    }

    internal IReadOnlyList<DiscoveredPeer> CompleteLookup(MockDhtLookup lookup)
    {
        if (FailLookups?.Invoke(lookup) is { } failure)
        {
            throw failure;
        }

        List<Record> found;
        lock (_gate)
        {
            found = LiveRecordsLocked(lookup.Topic);
        }

        // Knobs run outside the lock, so a predicate may call back into the registry.
        if (MissingRecords is { } missing)
        {
            _ = found.RemoveAll(record => missing(lookup, record.Peer));
        }

        return Ordered(lookup.Topic, found);
    }

    private static TimeSpan RequirePositive(TimeSpan value)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero);
        return value;
    }

    private static TimeSpan RequireNotNegative(TimeSpan value)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
        return value;
    }

    private TimeSpan Read(ref TimeSpan field)
    {
        lock (_gate)
        {
            return field;
        }
    }

    private void Write(ref TimeSpan field, TimeSpan value)
    {
        lock (_gate)
        {
            field = value;
        }
    }

    private void PutLocked(string topic, Record record)
    {
        if (!_records.TryGetValue(topic, out var byPeer))
        {
            byPeer = [];
            _records.Add(topic, byPeer);
        }

        byPeer[record.Peer] = record;
    }

    // Expired records are dropped as they are met, as a DHT node drops them when it next looks.
    private List<Record> LiveRecordsLocked(string topic)
    {
        if (!_records.TryGetValue(topic, out var byPeer))
        {
            return [];
        }

        var live = new List<Record>(byPeer.Count);
        List<PeerId>? expired = null;
        foreach (var record in byPeer.Values)
        {
            if (TimeProvider.GetElapsedTime(record.StoredAt) >= (record.Ttl ?? _recordTtl))
            {
                (expired ??= []).Add(record.Peer);
            }
            else
            {
                live.Add(record);
            }
        }

        if (expired is not null)
        {
            foreach (var peer in expired)
            {
                _ = byPeer.Remove(peer);
            }

            if (byPeer.Count == 0)
            {
                _ = _records.Remove(topic);
            }
        }

        return live;
    }

    private List<DiscoveredPeer> Ordered(string topic, List<Record> records)
    {
        if (records.Count == 0)
        {
            return [];
        }

        var topicKey = TopicKey.For(topic);
        var target = ResultOrder == MockDhtResultOrder.XorDistance ? SHA256.HashData(topicKey) : null;
        var keyed = new List<(byte[] Key, Record Record)>(records.Count);
        foreach (var record in records)
        {
            keyed.Add((SortKey(topicKey, target, record.Peer), record));
        }

        // Ties are impossible for distinct peers short of a SHA-256 collision; the PeerId breaks them anyway.
        keyed.Sort(static (x, y) =>
        {
            var byKey = x.Key.AsSpan().SequenceCompareTo(y.Key);
            return byKey != 0 ? byKey : x.Record.Peer.CompareTo(y.Record.Peer);
        });
        return keyed.ConvertAll(static k => new DiscoveredPeer(k.Record.Peer, k.Record.Addresses));
    }

    private byte[] SortKey(byte[] topicKey, byte[]? xorTarget, PeerId peer)
    {
        if (xorTarget is not null)
        {
            var distance = SHA256.HashData(peer.Bytes);
            for (var i = 0; i < distance.Length; i++)
            {
                distance[i] ^= xorTarget[i];
            }

            return distance;
        }

        // A hash of seed, topic and peer: a permutation that is stable per (seed, topic) and needs no
        // shared Random, so it does not depend on which lookup ran first.
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(_seedBytes);
        hash.AppendData(topicKey);
        hash.AppendData(peer.Bytes);
        return hash.GetHashAndReset();
    }

    private sealed record Record(PeerId Peer, IReadOnlyList<Multiaddress> Addresses, long StoredAt, TimeSpan? Ttl);
}
