using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Provider records by key, each expiring a TTL after it was last added, on the injected clock.
/// Bounded: at most <c>maxKeys</c> keys, <c>maxProvidersPerKey</c> providers per key,
/// <c>maxKeysPerProvider</c> keys per provider — the one sender a record can come from (a peer
/// announces only itself), so one identity cannot fill the store — <c>maxBytes</c> in all, since
/// identities cost nothing to make and the counts alone allow gigabytes of records with long keys
/// and many addresses, and <c>maxBytesPerOrigin</c> from one origin (<see cref="OriginShares"/>), so
/// one machine cycling identities cannot fill the store either.
/// </summary>
/// <remarks>
/// When a key is full a new provider is refused rather than evicting one already stored: records
/// from honest providers are refreshed before they lapse, while a flood of new identities cannot
/// push them out. Expired records are dropped as reads meet them and by <see cref="Sweep"/>; a write
/// about to be refused scans the store for expired records first only as often as
/// <see cref="RefusalSweepGate"/> allows, so a flood of refused ADD_PROVIDERs does not scan it for each one.
/// </remarks>
public sealed class ProviderStore
{
    private readonly ILogger _logger;
    private readonly Dictionary<byte[], Dictionary<PeerId, Stored>> _byKey = new(ByteKeyComparer.Instance);
    private readonly TimeProvider _timeProvider;
    private readonly TimeSpan _ttl;
    private readonly int _maxKeys;
    private readonly int _maxProvidersPerKey;
    private readonly int _maxKeysPerProvider;
    private readonly long _maxBytes;
    private readonly Dictionary<PeerId, int> _keysByProvider = [];
    private readonly RefusalSweepGate _refusalSweeps = new();
    private readonly OriginShares _origins;
    private readonly Lock _lock = new();
    private long _bytes;

    public ProviderStore(TimeProvider timeProvider, TimeSpan ttl, int maxKeys, int maxProvidersPerKey, int maxKeysPerProvider = DefaultMaxKeysPerProvider,
        long maxBytes = DefaultMaxBytes, long maxBytesPerOrigin = long.MaxValue, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        ArgumentOutOfRangeException.ThrowIfLessThan(maxKeysPerProvider, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytesPerOrigin, 1);
        _maxBytes = maxBytes;
        _origins = new OriginShares(maxBytesPerOrigin);
        _maxKeysPerProvider = maxKeysPerProvider;
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxKeys, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxProvidersPerKey, 1);
        _timeProvider = timeProvider;
        _ttl = ttl;
        _maxKeys = maxKeys;
        _maxProvidersPerKey = maxProvidersPerKey;
    }

    /// <summary>A worker announces a handful of topics; a DHT node serving content may announce more.</summary>
    public const int DefaultMaxKeysPerProvider = 1024;

    /// <summary>About 100,000 records of a key and two addresses each; a node serving more content raises it.</summary>
    public const long DefaultMaxBytes = 64L << 20;

    // What the store's objects around a key, a record and an address take beyond their bytes, measured
    // with GC.GetTotalMemory on .NET 10 x64 (the key's array and dictionaries; the record and its entry;
    // a parsed Multiaddress and its components): an estimate that errs high rather than low.
    private const int KeyOverhead = 240;
    private const int RecordOverhead = 128;
    private const int AddressOverhead = 208;

    /// <summary>An estimate of the memory the records and keys take, which <c>maxBytes</c> bounds: a diagnostic.</summary>
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

    public int KeyCount
    {
        get
        {
            lock (_lock) return _byKey.Count;
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
    /// Raised after a record is stored (outside the store's lock), with the key and the provider.
    /// ADD_PROVIDER has no reply in Kademlia, so this is how an observer learns a record arrived.
    /// </summary>
    public event Action<byte[], PeerId>? RecordAdded;

    /// <summary>Adds or refreshes <paramref name="provider"/> for <paramref name="key"/>; false when a cap refused it.</summary>
    /// <param name="origin">
    /// Where the announcement came from (<see cref="Addressing.AddressOrigin"/>), whose share it is counted
    /// against; null for none (our own records).
    /// </param>
    public bool Add(ReadOnlySpan<byte> key, PeerId provider, IReadOnlyList<Multiaddress> addresses, TimeSpan? ttl = null, string? origin = null)
    {
        if (!AddCore(key, provider, addresses, ttl, origin, out var keyBytes)) return false;
        EventSubscribers.Raise(RecordAdded, keyBytes, provider, _logger, $"{nameof(ProviderStore)}.{nameof(RecordAdded)}");
        return true;
    }

    private bool AddCore(ReadOnlySpan<byte> key, PeerId provider, IReadOnlyList<Multiaddress> addresses, TimeSpan? ttl, string? origin, out byte[] keyBytes)
    {
        ArgumentNullException.ThrowIfNull(provider);
        ArgumentNullException.ThrowIfNull(addresses);
        var now = _timeProvider.GetUtcNow();
        var record = new ProviderRecord(provider, addresses, now + (ttl ?? _ttl));
        var cost = CostOf(record);
        keyBytes = key.ToArray();
        // An origin is charged for the key too, whether or not other records share it: an estimate that errs
        // high, where charging only the record would let a flood of new keys take half again its share.
        var charge = cost + KeyCost(keyBytes);
        lock (_lock)
        {
            _byKey.TryGetValue(keyBytes, out var providers);
            var renewal = providers is not null && providers.ContainsKey(provider);
            if (!renewal && _keysByProvider.GetValueOrDefault(provider) >= _maxKeysPerProvider)
            {
                if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                if (_keysByProvider.GetValueOrDefault(provider) >= _maxKeysPerProvider) return false;
                _byKey.TryGetValue(keyBytes, out providers);
            }
            if (!_origins.Admits(origin, charge, ChargeReplaced(providers, provider, origin)))
            {
                if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                _byKey.TryGetValue(keyBytes, out providers);
                if (!_origins.Admits(origin, charge, ChargeReplaced(providers, provider, origin))) return false;
            }
            if (BytesAfter(providers, keyBytes, provider, cost) > _maxBytes)
            {
                if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                _byKey.TryGetValue(keyBytes, out providers);
                if (BytesAfter(providers, keyBytes, provider, cost) > _maxBytes) return false;
            }
            if (providers is null)
            {
                if (_byKey.Count >= _maxKeys)
                {
                    if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                    if (_byKey.Count >= _maxKeys) return false;
                }
                providers = [];
                _byKey[keyBytes] = providers;
                _bytes += KeyCost(keyBytes);
            }
            if (!providers.ContainsKey(provider) && providers.Count >= _maxProvidersPerKey)
            {
                PruneLocked(providers, now);
                if (providers.Count >= _maxProvidersPerKey) return false;
            }
            if (providers.TryGetValue(provider, out var replaced))
            {
                _bytes -= replaced.Cost;
                _origins.Release(replaced.Origin, replaced.Charge);
            }
            else
            {
                _keysByProvider[provider] = _keysByProvider.GetValueOrDefault(provider) + 1;
            }
            providers[provider] = new Stored(record, cost, origin, charge);
            _bytes += cost;
            _origins.Charge(origin, charge);
            Debug.Assert(_bytes <= _maxBytes, "the byte check above admits only what fits");
            _refusalSweeps.NoteExpiry(record.Expires);
            return true;
        }
    }

    /// <summary>The store's bytes once <paramref name="provider"/>'s record of <paramref name="cost"/> is stored under the key.</summary>
    private long BytesAfter(Dictionary<PeerId, Stored>? providers, byte[] key, PeerId provider, long cost)
    {
        if (providers is null) return _bytes + KeyCost(key) + cost;
        return providers.TryGetValue(provider, out var replaced) ? _bytes - replaced.Cost + cost : _bytes + cost;
    }

    /// <summary>What <paramref name="origin"/> gets back when <paramref name="provider"/>'s record under the key is replaced.</summary>
    private static long ChargeReplaced(Dictionary<PeerId, Stored>? providers, PeerId provider, string? origin) =>
        providers is not null && providers.TryGetValue(provider, out var replaced) && replaced.Origin == origin ? replaced.Charge : 0;

    private static long KeyCost(byte[] key) => KeyOverhead + key.Length;

    private static long CostOf(ProviderRecord record)
    {
        long cost = RecordOverhead;
        foreach (var address in record.Addresses) cost += AddressOverhead + address.Bytes.Length;
        return cost;
    }

    /// <summary>The live providers of <paramref name="key"/>, at most <paramref name="max"/>.</summary>
    public IReadOnlyList<ProviderRecord> Get(ReadOnlySpan<byte> key, int max = int.MaxValue)
    {
        var now = _timeProvider.GetUtcNow();
        var keyBytes = key.ToArray();
        lock (_lock)
        {
            if (!_byKey.TryGetValue(keyBytes, out var providers)) return [];
            PruneLocked(providers, now);
            if (providers.Count == 0)
            {
                RemoveKeyLocked(keyBytes);
                return [];
            }
            var live = new ProviderRecord[Math.Min(max, providers.Count)];
            var i = 0;
            foreach (var stored in providers.Values)
            {
                if (i == live.Length) break;
                live[i++] = stored.Record;
            }
            return live;
        }
    }

    public bool Remove(ReadOnlySpan<byte> key, PeerId provider)
    {
        var keyBytes = key.ToArray();
        lock (_lock)
        {
            if (!_byKey.TryGetValue(keyBytes, out var providers) || !providers.Remove(provider, out var removed)) return false;
            Forget(removed);
            if (providers.Count == 0) RemoveKeyLocked(keyBytes);
            return true;
        }
    }

    /// <summary>Drops every expired record; returns how many.</summary>
    public int Sweep()
    {
        lock (_lock) return SweepLocked(_timeProvider.GetUtcNow());
    }

    private int SweepLocked(DateTimeOffset now)
    {
        var removed = 0;
        var earliest = DateTimeOffset.MaxValue;
        List<byte[]>? emptyKeys = null;
        foreach (var (key, providers) in _byKey)
        {
            removed += PruneLocked(providers, now);
            if (providers.Count == 0) (emptyKeys ??= []).Add(key);
            foreach (var stored in providers.Values)
                if (stored.Record.Expires < earliest) earliest = stored.Record.Expires;
        }
        if (emptyKeys is not null)
        {
            foreach (var key in emptyKeys) RemoveKeyLocked(key);
        }
        _refusalSweeps.Swept(now, earliest);
        return removed;
    }

    private int PruneLocked(Dictionary<PeerId, Stored> providers, DateTimeOffset now)
    {
        var removed = 0;
        foreach (var (peer, stored) in providers)
        {
            if (stored.Record.Expires <= now && providers.Remove(peer))
            {
                removed++;
                Forget(stored);
            }
        }
        return removed;
    }

    private void Forget(Stored stored)
    {
        _bytes -= stored.Cost;
        Debug.Assert(_bytes >= 0, "a record's bytes are given back once");
        _origins.Release(stored.Origin, stored.Charge);
        var provider = stored.Record.Provider;
        var count = _keysByProvider.GetValueOrDefault(provider);
        if (count > 1) _keysByProvider[provider] = count - 1;
        else _keysByProvider.Remove(provider);
    }

    /// <summary>
    /// A record and what it was counted as when stored: the caller keeps the address list, and may change it
    /// afterwards, so the cost is not computed again when the record leaves. <paramref name="Charge"/> is
    /// what <paramref name="Origin"/>'s share was charged.
    /// </summary>
    private readonly record struct Stored(ProviderRecord Record, long Cost, string? Origin, long Charge);

    private void RemoveKeyLocked(byte[] key)
    {
        if (!_byKey.Remove(key, out var providers)) return;
        Debug.Assert(providers.Count == 0, "only an empty key is removed");
        _bytes -= KeyCost(key);
        Debug.Assert(_bytes >= 0, "a key's bytes are given back once");
    }
}
