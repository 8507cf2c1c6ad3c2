using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Kademlia k-buckets indexed by the common-prefix length of SHA-256 ids with our own (bucket 0
/// holds the farthest half of the key space). Each bucket keeps at most <see cref="BucketSize"/>
/// peers, least recently seen first, and a replacement cache of the same size.
/// </summary>
/// <remarks>
/// Replacement is liveness-based as in the Kademlia paper: a full bucket keeps its peers and queues
/// the newcomer; a peer that fails requests (<see cref="MarkFailed"/>) is evicted and the most
/// recently seen queued peer takes its place. Buckets are allocated on first use, so a table costs
/// memory in proportion to the peers it holds. Thread-safe (one lock; operations are short).
/// </remarks>
public sealed class RoutingTable
{
    private readonly ILogger _logger;
    private readonly Bucket?[] _buckets = new Bucket?[KadId.Bits];
    private readonly Dictionary<PeerId, Entry> _index = [];
    private readonly TimeProvider _timeProvider;
    private readonly int _maxFailures;
    private readonly Lock _lock = new();

    public RoutingTable(PeerId self, int bucketSize, TimeProvider timeProvider, int maxFailures = 1, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        ArgumentNullException.ThrowIfNull(self);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxFailures, 1);
        Self = self;
        LocalId = KadId.FromPeer(self);
        BucketSize = bucketSize;
        _timeProvider = timeProvider;
        _maxFailures = maxFailures;
    }

    public PeerId Self { get; }
    public KadId LocalId { get; }
    public int BucketSize { get; }

    /// <summary>Raised outside the lock when a peer enters the table (added or promoted from a replacement cache).</summary>
    public event Action<PeerId>? PeerAdded;

    /// <summary>Raised outside the lock when a peer leaves the table.</summary>
    public event Action<PeerId>? PeerRemoved;

    public int Count
    {
        get
        {
            lock (_lock) return _index.Count;
        }
    }

    public IReadOnlyList<PeerId> Peers
    {
        get
        {
            lock (_lock) return _index.Keys.ToArray();
        }
    }

    public bool Contains(PeerId peer)
    {
        lock (_lock) return _index.ContainsKey(peer);
    }

    /// <summary>The bucket <paramref name="id"/> falls into (its common-prefix length with ours, at most 255).</summary>
    public int BucketIndexOf(KadId id) => Math.Min(LocalId.CommonPrefixLength(id), KadId.Bits - 1);

    /// <summary>Peers per bucket index, for tests and diagnostics.</summary>
    public IReadOnlyDictionary<int, int> BucketSizes
    {
        get
        {
            lock (_lock)
            {
                var sizes = new Dictionary<int, int>();
                for (var i = 0; i < _buckets.Length; i++)
                {
                    if (_buckets[i] is { Peers.Count: > 0 } b) sizes[i] = b.Peers.Count;
                }
                return sizes;
            }
        }
    }

    public RoutingTableUpdate TryAdd(PeerId peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (peer == Self) return RoutingTableUpdate.Self;
        var now = _timeProvider.GetTimestamp();
        lock (_lock)
        {
            if (_index.TryGetValue(peer, out var existing))
            {
                existing.Failures = 0;
                existing.LastSeen = now;
                var bucket = _buckets[existing.Bucket]!;
                bucket.Peers.Remove(existing);
                bucket.Peers.Add(existing);
                return RoutingTableUpdate.Refreshed;
            }
            var id = KadId.FromPeer(peer);
            var index = BucketIndexOf(id);
            var target = _buckets[index] ??= new Bucket();
            if (target.Peers.Count >= BucketSize)
            {
                target.Queue(new Entry(peer, id, index) { LastSeen = now }, BucketSize);
                return RoutingTableUpdate.Queued;
            }
            var entry = new Entry(peer, id, index) { LastSeen = now };
            target.Peers.Add(entry);
            _index[peer] = entry;
        }
        EventSubscribers.Raise(PeerAdded, peer, _logger, $"{nameof(RoutingTable)}.{nameof(PeerAdded)}");
        return RoutingTableUpdate.Added;
    }

    /// <summary>
    /// Counts a failed request to <paramref name="peer"/>; at the failure limit the peer is evicted and
    /// a queued replacement, if any, takes its place. Returns true when the peer was evicted.
    /// </summary>
    public bool MarkFailed(PeerId peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        PeerId? promoted;
        lock (_lock)
        {
            if (!_index.TryGetValue(peer, out var entry))
            {
                // A queued peer that fails is not worth promoting later.
                foreach (var b in _buckets) b?.Replacements.RemoveAll(e => e.Peer == peer);
                return false;
            }
            if (++entry.Failures < _maxFailures) return false;
            promoted = RemoveLocked(entry);
        }
        EventSubscribers.Raise(PeerRemoved, peer, _logger, $"{nameof(RoutingTable)}.{nameof(PeerRemoved)}");
        if (promoted is not null) EventSubscribers.Raise(PeerAdded, promoted, _logger, $"{nameof(RoutingTable)}.{nameof(PeerAdded)}");
        return true;
    }

    public bool Remove(PeerId peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        PeerId? promoted;
        lock (_lock)
        {
            if (!_index.TryGetValue(peer, out var entry)) return false;
            promoted = RemoveLocked(entry);
        }
        EventSubscribers.Raise(PeerRemoved, peer, _logger, $"{nameof(RoutingTable)}.{nameof(PeerRemoved)}");
        if (promoted is not null) EventSubscribers.Raise(PeerAdded, promoted, _logger, $"{nameof(RoutingTable)}.{nameof(PeerAdded)}");
        return true;
    }

    /// <summary>Up to <paramref name="count"/> peers closest to <paramref name="target"/> by XOR distance, closest first.</summary>
    public IReadOnlyList<PeerId> NearestPeers(KadId target, int count, PeerId? exclude = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0) return [];
        lock (_lock)
        {
            if (_index.Count == 0) return [];
            var nearest = new PeerId[Math.Min(count, _index.Count)];
            var found = NearestPeers(target, exclude, nearest);
            return found == nearest.Length ? nearest : nearest[..found];
        }
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with up to its length of the peers closest to <paramref name="target"/>,
    /// closest first, as <see cref="NearestPeers(KadId, int, PeerId?)"/> lists them; returns how many. For a caller
    /// that needs them only for a moment (a kad server answers every request with k of them).
    /// </summary>
    internal int NearestPeers(KadId target, PeerId? exclude, Span<PeerId> destination)
    {
        // Every kad request asks this with k of a table that holds hundreds, so only the buckets that can hold the k
        // nearest are walked. With j the target's bucket (its common-prefix length with us), a peer in bucket j agrees
        // with the target on bit j, one in a bucket above j does not (but agrees above it), and one in bucket i < j
        // first differs from the target at bit i. So distances grow bucket by bucket in this order: j, then every
        // bucket above j together, then j-1, j-2, ..., 0; once the buckets taken hold k peers, none further in the
        // order can be nearer. Within them the k nearest are kept sorted by insertion. Distances of distinct peers
        // never tie, so the order is the one a full sort of the table gives.
        lock (_lock)
        {
            var count = Math.Min(destination.Length, _index.Count);
            if (count == 0) return 0;
            var nearest = destination[..count];
            // The ids of the peers kept so far, to compare distances with: k of them, on the stack for any usual k.
            var ids = count <= MaxStackIds ? stackalloc KadId[count] : new KadId[count];
            var filled = 0;
            var j = BucketIndexOf(target);
            var seen = Take(_buckets[j], target, exclude, nearest, ids, ref filled);
            if (seen < count)
            {
                for (var i = j + 1; i < _buckets.Length; i++) seen += Take(_buckets[i], target, exclude, nearest, ids, ref filled);
            }
            for (var i = j - 1; i >= 0 && seen < count; i--) seen += Take(_buckets[i], target, exclude, nearest, ids, ref filled);
            return filled;
        }
    }

    private const int MaxStackIds = 64;

    /// <summary>
    /// Offers a bucket's peers to the sorted nearest, the first <paramref name="filled"/> of <paramref name="nearest"/>
    /// (at most its length); returns how many it offered.
    /// </summary>
    private static int Take(Bucket? bucket, KadId target, PeerId? exclude, Span<PeerId> nearest, Span<KadId> ids, ref int filled)
    {
        if (bucket is null) return 0;
        var count = nearest.Length;
        var offered = 0;
        foreach (var e in bucket.Peers)
        {
            if (exclude is not null && e.Peer == exclude) continue;
            offered++;
            var at = filled;
            while (at > 0 && target.CompareDistance(e.Id, ids[at - 1]) < 0) at--;
            if (at == count) continue;
            // The farthest drops out when all places are taken; those from at on move one place down.
            if (filled == count) filled--;
            ids[at..filled].CopyTo(ids[(at + 1)..]);
            nearest[at..filled].CopyTo(nearest[(at + 1)..]);
            ids[at] = e.Id;
            nearest[at] = e.Peer;
            filled++;
        }
        return offered;
    }

    /// <summary>Indexes of buckets that hold at least one peer, for refresh.</summary>
    public IReadOnlyList<int> NonEmptyBuckets()
    {
        lock (_lock)
        {
            var list = new List<int>();
            for (var i = 0; i < _buckets.Length; i++)
            {
                if (_buckets[i] is { Peers.Count: > 0 }) list.Add(i);
            }
            return list;
        }
    }

    private PeerId? RemoveLocked(Entry entry)
    {
        _index.Remove(entry.Peer);
        var bucket = _buckets[entry.Bucket]!;
        bucket.Peers.Remove(entry);
        if (bucket.Replacements.Count == 0) return null;
        // The most recently seen replacement is the likeliest to be alive.
        var next = bucket.Replacements[^1];
        bucket.Replacements.RemoveAt(bucket.Replacements.Count - 1);
        next.Failures = 0;
        bucket.Peers.Add(next);
        _index[next.Peer] = next;
        return next.Peer;
    }

    private sealed class Bucket
    {
        /// <summary>Least recently seen first.</summary>
        public List<Entry> Peers { get; } = [];

        /// <summary>Most recently seen last; bounded by the bucket size.</summary>
        public List<Entry> Replacements { get; } = [];

        public void Queue(Entry entry, int capacity)
        {
            var at = Replacements.FindIndex(e => e.Peer == entry.Peer);
            if (at >= 0) Replacements.RemoveAt(at);
            else if (Replacements.Count >= capacity) Replacements.RemoveAt(0);
            Replacements.Add(entry);
        }
    }

    private sealed class Entry(PeerId peer, KadId id, int bucket)
    {
        public PeerId Peer { get; } = peer;
        public KadId Id { get; } = id;
        public int Bucket { get; } = bucket;
        public long LastSeen { get; set; }
        public int Failures { get; set; }
    }
}
