using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Host;

/// <summary>What a host knows of other peers: addresses to dial, protocols, agent. Bounded in peers and bytes, and it forgets.</summary>
/// <remarks>
/// Each address carries its source (<see cref="AddressSource"/>) and expires a TTL after it was last
/// heard of. An address a third party told us never displaces one the peer told us itself (or that
/// we reached it at): when a peer's list is full, a third-party address replaces only another
/// third-party one, so a DHT responder cannot bury the real Auth's addresses under 32 dead ones.
/// When the store is full, the peer heard of least recently goes — preferably one we only heard
/// about from others — but never one a <see cref="Retain"/> check says is in use (connected, in the
/// DHT's routing table): identities cost nothing, so recency alone would let a flood of them push
/// out the peers the node depends on. Full means <c>capacity</c> peers or <c>maxBytes</c> of them:
/// an identify answer may carry 64 KiB of protocol names, so a count alone would let one host
/// cycling identities fill gigabytes.
/// </remarks>
public sealed class PeerStore
{
    public const int MaxAddressesPerPeer = 32;
    public const int MaxProtocolsPerPeer = 128;

    /// <summary>How long an address the peer gave us itself stays dialable after we last heard it.</summary>
    public static readonly TimeSpan SelfAddressTtl = TimeSpan.FromHours(24);

    /// <summary>How long an address from a third party stays dialable after we last heard it.</summary>
    public static readonly TimeSpan ThirdPartyAddressTtl = TimeSpan.FromHours(1);

    // Eviction looks this far from the least recently heard-of end for a peer we only heard about from others.
    private const int EvictionScan = 64;

    private readonly ILogger _logger;
    private readonly Dictionary<PeerId, LinkedListNode<PeerRecord>> _peers = [];
    private readonly LinkedList<PeerRecord> _byRecency = new();
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly int _capacity;
    private readonly long _maxBytes;
    private long _bytes;
    private Func<PeerId, bool>[] _inUseChecks = [];

    public PeerStore(TimeProvider timeProvider, int capacity = DefaultCapacity, long maxBytes = DefaultMaxBytes, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        _time = timeProvider;
        _capacity = capacity;
        _maxBytes = maxBytes;
    }

    public const int DefaultCapacity = 100_000;

    /// <summary>
    /// About 100,000 peers of two addresses and a dozen protocols each (about 1.3 KiB with the objects
    /// around them); a peer's own caps (32 addresses, 128 protocols, one identify answer) keep any one of
    /// them far below it.
    /// </summary>
    public const long DefaultMaxBytes = 128L << 20;

    // What the objects around a peer, an address and a string take beyond their bytes, measured with
    // GC.GetTotalMemory on .NET 10 x64 (the record, its list, node and dictionary entry; a parsed
    // Multiaddress, its components and its entry): an estimate that errs high rather than low.
    private const int PeerOverhead = 320;
    private const int AddressOverhead = 240;
    private const int StringOverhead = 32;

    /// <summary>An estimate of the memory the peers take, which <c>maxBytes</c> bounds: a diagnostic.</summary>
    public long Bytes
    {
        get
        {
            lock (_lock) return _bytes;
        }
    }

    public int Count
    {
        get
        {
            lock (_lock) return _peers.Count;
        }
    }

    public IEnumerable<PeerId> Peers
    {
        get
        {
            lock (_lock) return _peers.Keys.ToArray();
        }
    }

    /// <summary>
    /// Keeps every peer for which <paramref name="inUse"/> is true from being forgotten to make room, until the
    /// returned handle is disposed. The check runs under the store's lock, only when the store is full, so it must
    /// be cheap and must not call back into the store. What it keeps should be bounded by its owner (a routing
    /// table, the open connections): the store exceeds its bounds by those peers rather than forget them.
    /// </summary>
    public IDisposable Retain(Func<PeerId, bool> inUse)
    {
        ArgumentNullException.ThrowIfNull(inUse);
        lock (_lock) _inUseChecks = [.. _inUseChecks, inUse];
        return new Retention(this, inUse);
    }

    private sealed class Retention(PeerStore store, Func<PeerId, bool> inUse) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            lock (store._lock)
            {
                // This registration's own entry: equal delegates registered twice are two registrations.
                var checks = store._inUseChecks;
                var at = Array.IndexOf(checks, inUse);
                Debug.Assert(at >= 0, "a registration is removed once");
                store._inUseChecks = [.. checks[..at], .. checks[(at + 1)..]];
            }
        }
    }

    /// <summary>Raised after a peer's protocol list is set (identify finished), so a protocol like kad can adopt it.</summary>
    public event Action<PeerId>? ProtocolsUpdated;

    /// <summary>
    /// Adds or refreshes dialable addresses (any /p2p suffix removed), as claims of a third party heard over a
    /// public connection: a name among them must resolve to public addresses when we dial it.
    /// </summary>
    public void AddAddresses(PeerId peer, IEnumerable<Multiaddress> addresses) => AddAddresses(peer, addresses, AddressSource.ThirdParty);

    /// <summary>
    /// Adds or refreshes dialable addresses (any /p2p suffix removed) learned from <paramref name="source"/>
    /// over a public connection: a name among them must resolve to public addresses when we dial it.
    /// </summary>
    public void AddAddresses(PeerId peer, IEnumerable<Multiaddress> addresses, AddressSource source) =>
        AddAddresses(peer, addresses, source, AddressScope.Public);

    /// <summary>Adds or refreshes dialable addresses (any /p2p suffix removed) learned from <paramref name="source"/>.</summary>
    /// <param name="heardOver">
    /// The scope of the connection they came over (<see cref="AddressScopes"/>), which is the narrowest scope a
    /// DNS name among them may resolve to when we dial it (<see cref="NarrowestDialScope"/>): a name names no
    /// scope until it is resolved, so a peer we reach on a public address could otherwise aim our dials at our
    /// loopback or LAN with a name of its own. <see cref="AddressScope.Loopback"/> (any) for addresses this
    /// host's operator or code gave. Hearing an address again keeps the widest permission any source gave.
    /// </param>
    public void AddAddresses(PeerId peer, IEnumerable<Multiaddress> addresses, AddressSource source, AddressScope heardOver) =>
        AddAddresses(peer, addresses, source, heardOver, unlistedBy: null);

    /// <summary>
    /// Takes an identify answer's or push's listen addresses: <paramref name="accepted"/> (those of
    /// <paramref name="listed"/> this node accepts at the connection's scope) are added as the peer's own, and the
    /// addresses the peer listed before and no longer lists in <paramref name="listed"/> are dropped, so a relay
    /// reservation it gave up or a listener it closed is not dialed for the rest of its day-long lifetime. Addresses
    /// it never listed stay: one we reached it at (behind a NAT, its mapping) or one a third party named. An empty
    /// <paramref name="listed"/> changes nothing, since identify push sends only what changed (a missing field keeps
    /// what is known).
    /// </summary>
    public void SetListenAddresses(PeerId peer, IReadOnlyList<Multiaddress> listed, IEnumerable<Multiaddress> accepted, AddressScope heardOver)
    {
        ArgumentNullException.ThrowIfNull(listed);
        if (listed.Count == 0) return;
        AddAddresses(peer, accepted, AddressSource.Self, heardOver, unlistedBy: listed);
    }

    /// <param name="unlistedBy">
    /// The peer's own list of its listen addresses, when the addresses come from it: they are marked as listed,
    /// and those marked earlier that it no longer holds are dropped. Null for every other source.
    /// </param>
    private void AddAddresses(PeerId peer, IEnumerable<Multiaddress> addresses, AddressSource source, AddressScope heardOver,
        IReadOnlyList<Multiaddress>? unlistedBy)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        var now = _time.GetUtcNow();
        var expires = now + (source == AddressSource.Self ? SelfAddressTtl : ThirdPartyAddressTtl);
        var listed = unlistedBy is not null;
        Debug.Assert(!listed || source == AddressSource.Self, "only the peer itself lists its addresses");
        lock (_lock)
        {
            var record = GetOrCreateLocked(peer, now);
            if (RemoveExpired(record.Addresses, now)) record.Snapshot = null;
            if (unlistedBy is not null && RemoveUnlisted(record.Addresses, unlistedBy)) record.Snapshot = null;
            // Most peers have one or two addresses; a list's default first growth holds four.
            if (record.Addresses.Capacity == 0 && addresses.TryGetNonEnumeratedCount(out var expected))
                record.Addresses.Capacity = Math.Min(expected, MaxAddressesPerPeer);
            foreach (var address in addresses)
            {
                var plain = address.WithoutPeerId();
                if (plain.Components.Count == 0) continue;
                var index = IndexOf(record.Addresses, plain);
                if (index >= 0)
                {
                    var known = record.Addresses[index];
                    if (heardOver < known.HeardOver) record.Addresses[index] = known = known with { HeardOver = heardOver };
                    // Hearing a self-reported address again from a third party neither demotes nor extends it.
                    // Listed addresses come with the strongest source, so this branch marks them.
                    if (source >= known.Source)
                    {
                        record.Addresses[index] = new AddressEntry(plain, source, expires, known.HeardOver, known.Listed || listed);
                        // A later expiry alone leaves the snapshot valid (it lapses at the earliest one it saw).
                        if (source != known.Source) record.Snapshot = null;
                    }
                    continue;
                }
                if (record.Addresses.Count >= MaxAddressesPerPeer && !MakeRoomLocked(record, source)) continue;
                record.Addresses.Add(new AddressEntry(plain, source, expires, heardOver, listed));
                record.Snapshot = null;
            }
            long addressBytes = 0;
            foreach (var entry in record.Addresses) addressBytes += AddressOverhead + entry.Address.Bytes.Length;
            _bytes += addressBytes - record.AddressBytes;
            record.AddressBytes = addressBytes;
            TrimLocked(record, now);
        }
    }

    /// <summary>
    /// The narrowest scope an address of <paramref name="peer"/>'s may resolve to when dialed: the narrowest
    /// scope of the connections it was heard over (see <see cref="AddAddresses(PeerId, IEnumerable{Multiaddress}, AddressSource, AddressScope)"/>);
    /// <see cref="AddressScope.Public"/> for an address the store does not hold.
    /// </summary>
    public AddressScope NarrowestDialScope(PeerId peer, Multiaddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        var plain = address.WithoutPeerId();
        lock (_lock)
        {
            if (!_peers.TryGetValue(peer, out var node)) return AddressScope.Public;
            var index = IndexOf(node.Value.Addresses, plain);
            return index < 0 ? AddressScope.Public : node.Value.Addresses[index].HeardOver;
        }
    }

    /// <summary>The peer's live addresses, those it told us itself first.</summary>
    public IReadOnlyList<Multiaddress> GetAddresses(PeerId peer)
    {
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            if (!_peers.TryGetValue(peer, out var node)) return [];
            var record = node.Value;
            // Every DHT reply asks this for each of the k peers it names, mostly for peers whose addresses
            // have not changed since: the list is shared until an address is added, dropped, re-sourced or lapses.
            if (record.Snapshot is { } snapshot && now >= record.SnapshotTaken && now < record.SnapshotLapses) return snapshot;
            var addresses = record.Addresses;
            var count = 0;
            var lapses = DateTimeOffset.MaxValue;
            foreach (var a in addresses)
            {
                if (a.Expires <= now) continue;
                count++;
                if (a.Expires < lapses) lapses = a.Expires;
            }
            // Stronger sources first, each in stored order (a stable sort by source, descending), without
            // LINQ's sort.
            var result = count == 0 ? [] : new Multiaddress[count];
            var i = 0;
            for (var source = AddressSource.Self; source >= AddressSource.ThirdParty && i < count; source--)
                foreach (var a in addresses)
                    if (a.Source == source && a.Expires > now) result[i++] = a.Address;
            record.Snapshot = result;
            record.SnapshotTaken = now;
            record.SnapshotLapses = lapses;
            return result;
        }
    }

    public void SetProtocols(PeerId peer, IEnumerable<string> protocols, string? agentVersion)
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            var record = GetOrCreateLocked(peer, now);
            record.Protocols = protocols.Take(MaxProtocolsPerPeer).ToArray();
            record.AgentVersion = agentVersion;
            record.Identified = true;
            long identifyBytes = agentVersion is null ? 0 : StringOverhead + 2L * agentVersion.Length;
            foreach (var protocol in record.Protocols) identifyBytes += StringOverhead + 2L * protocol.Length;
            _bytes += identifyBytes - record.IdentifyBytes;
            record.IdentifyBytes = identifyBytes;
            TrimLocked(record, now);
        }
        EventSubscribers.Raise(ProtocolsUpdated, peer, _logger, $"{nameof(PeerStore)}.{nameof(ProtocolsUpdated)}");
    }

    public IReadOnlyList<string> GetProtocols(PeerId peer)
    {
        lock (_lock) return _peers.TryGetValue(peer, out var node) ? node.Value.Protocols : [];
    }

    public string? GetAgentVersion(PeerId peer)
    {
        lock (_lock) return _peers.TryGetValue(peer, out var node) ? node.Value.AgentVersion : null;
    }

    public bool Remove(PeerId peer)
    {
        lock (_lock)
        {
            if (!_peers.Remove(peer, out var node)) return false;
            _byRecency.Remove(node);
            _bytes -= node.Value.Bytes;
            return true;
        }
    }

    private PeerRecord GetOrCreateLocked(PeerId peer, DateTimeOffset now)
    {
        if (_peers.TryGetValue(peer, out var node))
        {
            // Most recently heard of at the tail; eviction starts at the head.
            _byRecency.Remove(node);
            _byRecency.AddLast(node);
            return node.Value;
        }
        // When every peer is in use, the new one is added anyway: the owners of the checks bound how many that can be.
        if (_peers.Count >= _capacity) EvictLocked(now, spare: null);
        node = _byRecency.AddLast(new PeerRecord(peer));
        _peers[peer] = node;
        _bytes += node.Value.Bytes;
        TrimLocked(node.Value, now);
        return node.Value;
    }

    /// <summary>Evicts peers other than <paramref name="record"/>, which just grew, while the store is over its byte budget.</summary>
    private void TrimLocked(PeerRecord record, DateTimeOffset now)
    {
        // The peer just heard of stays: its own caps bound it, and it is the one the caller is about to use.
        while (_bytes > _maxBytes && _peers.Count > 1 && EvictLocked(now, spare: record)) { }
        Debug.Assert(_bytes >= 0, "a peer's bytes are given back once");
    }

    /// <summary>Forgets one peer other than <paramref name="spare"/> and those in use; false when there is none.</summary>
    private bool EvictLocked(DateTimeOffset now, PeerRecord? spare)
    {
        // The least recently heard of that is not in use, unless one of the next few was only heard of from others.
        // A peer in use met on the way moves to the most recent end, so a full store of them is walked once per
        // eviction at most and the next eviction starts past them.
        LinkedListNode<PeerRecord>? victim = null;
        var node = _byRecency.First;
        for (int walked = 0, total = _peers.Count, scanned = 0; node is not null && walked < total && scanned < EvictionScan; walked++)
        {
            var next = node.Next;
            var record = node.Value;
            if (record == spare)
            {
                node = next;
                continue;
            }
            if (InUseLocked(record.PeerId))
            {
                _byRecency.Remove(node);
                _byRecency.AddLast(node);
                node = next;
                continue;
            }
            victim ??= node;
            if (!record.Identified && !HasLiveSelfAddress(record, now))
            {
                victim = node;
                break;
            }
            scanned++;
            node = next;
        }
        if (victim is null) return false;
        _peers.Remove(victim.Value.PeerId);
        _byRecency.Remove(victim);
        _bytes -= victim.Value.Bytes;
        return true;
    }

    private bool InUseLocked(PeerId peer)
    {
        foreach (var inUse in _inUseChecks)
            if (inUse(peer)) return true;
        return false;
    }

    private static bool HasLiveSelfAddress(PeerRecord record, DateTimeOffset now)
    {
        foreach (var a in record.Addresses)
            if (a.Source == AddressSource.Self && a.Expires > now) return true;
        return false;
    }

    /// <summary>Drops the addresses the peer listed before that <paramref name="listed"/> no longer holds; returns whether any went.</summary>
    private static bool RemoveUnlisted(List<AddressEntry> addresses, IReadOnlyList<Multiaddress> listed)
    {
        var removed = false;
        for (var i = addresses.Count - 1; i >= 0; i--)
        {
            if (!addresses[i].Listed || Lists(listed, addresses[i].Address)) continue;
            addresses.RemoveAt(i);
            removed = true;
        }
        return removed;
    }

    private static bool Lists(IReadOnlyList<Multiaddress> listed, Multiaddress plain)
    {
        foreach (var address in listed)
            if (address.WithoutPeerId() == plain) return true;
        return false;
    }

    // Loops rather than RemoveAll/FindIndex with lambdas: every address a kad reply names passes through
    // here, and the captured closures were a measurable share of the DHT simulation's allocations.
    /// <summary>Returns whether any address was dropped.</summary>
    private static bool RemoveExpired(List<AddressEntry> addresses, DateTimeOffset now)
    {
        var kept = 0;
        for (var i = 0; i < addresses.Count; i++)
        {
            if (addresses[i].Expires <= now) continue;
            if (kept != i) addresses[kept] = addresses[i];
            kept++;
        }
        if (kept == addresses.Count) return false;
        addresses.RemoveRange(kept, addresses.Count - kept);
        return true;
    }

    private static int IndexOf(List<AddressEntry> addresses, Multiaddress address)
    {
        for (var i = 0; i < addresses.Count; i++)
            if (addresses[i].Address == address) return i;
        return -1;
    }

    /// <summary>Drops one address to make room for one from <paramref name="source"/>; false when none may go.</summary>
    private static bool MakeRoomLocked(PeerRecord record, AddressSource source)
    {
        var index = IndexOfSoonestExpiring(record.Addresses, AddressSource.ThirdParty);
        if (index < 0 && source == AddressSource.Self) index = IndexOfSoonestExpiring(record.Addresses, AddressSource.Self);
        if (index < 0) return false;
        record.Addresses.RemoveAt(index);
        record.Snapshot = null;
        return true;
    }

    private static int IndexOfSoonestExpiring(List<AddressEntry> addresses, AddressSource source)
    {
        var best = -1;
        for (var i = 0; i < addresses.Count; i++)
        {
            if (addresses[i].Source == source && (best < 0 || addresses[i].Expires < addresses[best].Expires)) best = i;
        }
        return best;
    }

    /// <param name="Listed">The peer named it among its listen addresses in identify; it may later take it back.</param>
    private readonly record struct AddressEntry(Multiaddress Address, AddressSource Source, DateTimeOffset Expires, AddressScope HeardOver, bool Listed);

    private sealed class PeerRecord(PeerId peerId)
    {
        public PeerId PeerId { get; } = peerId;
        public List<AddressEntry> Addresses { get; } = [];

        /// <summary>The last answer of <see cref="GetAddresses"/>, valid from when it was taken until its earliest expiry; null once the list changed.</summary>
        public Multiaddress[]? Snapshot { get; set; }
        public DateTimeOffset SnapshotTaken { get; set; }
        public DateTimeOffset SnapshotLapses { get; set; }
        public IReadOnlyList<string> Protocols { get; set; } = [];
        public string? AgentVersion { get; set; }
        public bool Identified { get; set; }

        /// <summary>This peer's share of the store's bytes: the record itself, its addresses and its identify answer.</summary>
        public long Bytes => PeerOverhead + AddressBytes + IdentifyBytes;
        public long AddressBytes { get; set; }
        public long IdentifyBytes { get; set; }
    }
}
