using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Provider records by key, each expiring a TTL after it was last added, on the injected clock.
/// Bounded: at most <c>maxKeys</c> keys, <c>maxProvidersPerKey</c> providers per key, and
/// <c>maxKeysPerProvider</c> keys per provider — the one sender a record can come from (a peer
/// announces only itself), so one identity cannot fill the store.
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
    private readonly Dictionary<byte[], Dictionary<PeerId, ProviderRecord>> _byKey = new(ByteKeyComparer.Instance);
    private readonly TimeProvider _timeProvider;
    private readonly TimeSpan _ttl;
    private readonly int _maxKeys;
    private readonly int _maxProvidersPerKey;
    private readonly int _maxKeysPerProvider;
    private readonly Dictionary<PeerId, int> _keysByProvider = [];
    private readonly RefusalSweepGate _refusalSweeps = new();
    private readonly Lock _lock = new();

    public ProviderStore(TimeProvider timeProvider, TimeSpan ttl, int maxKeys, int maxProvidersPerKey, int maxKeysPerProvider = DefaultMaxKeysPerProvider)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxKeysPerProvider, 1);
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
    public bool Add(ReadOnlySpan<byte> key, PeerId provider, IReadOnlyList<Multiaddress> addresses, TimeSpan? ttl = null)
    {
        if (!AddCore(key, provider, addresses, ttl, out var keyBytes)) return false;
        RecordAdded?.Invoke(keyBytes, provider);
        return true;
    }

    private bool AddCore(ReadOnlySpan<byte> key, PeerId provider, IReadOnlyList<Multiaddress> addresses, TimeSpan? ttl, out byte[] keyBytes)
    {
        ArgumentNullException.ThrowIfNull(provider);
        ArgumentNullException.ThrowIfNull(addresses);
        var now = _timeProvider.GetUtcNow();
        var record = new ProviderRecord(provider, addresses, now + (ttl ?? _ttl));
        keyBytes = key.ToArray();
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
            if (providers is null)
            {
                if (_byKey.Count >= _maxKeys)
                {
                    if (_refusalSweeps.AllowsSweep(now)) SweepLocked(now);
                    if (_byKey.Count >= _maxKeys) return false;
                }
                providers = [];
                _byKey[keyBytes] = providers;
            }
            if (!providers.ContainsKey(provider) && providers.Count >= _maxProvidersPerKey)
            {
                PruneLocked(providers, now);
                if (providers.Count >= _maxProvidersPerKey) return false;
            }
            if (!providers.ContainsKey(provider)) _keysByProvider[provider] = _keysByProvider.GetValueOrDefault(provider) + 1;
            providers[provider] = record;
            _refusalSweeps.NoteExpiry(record.Expires);
            return true;
        }
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
                _byKey.Remove(keyBytes);
                return [];
            }
            return providers.Values.Take(max).ToArray();
        }
    }

    public bool Remove(ReadOnlySpan<byte> key, PeerId provider)
    {
        var keyBytes = key.ToArray();
        lock (_lock)
        {
            if (!_byKey.TryGetValue(keyBytes, out var providers) || !providers.Remove(provider)) return false;
            Forget(provider);
            if (providers.Count == 0) _byKey.Remove(keyBytes);
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
            foreach (var record in providers.Values)
                if (record.Expires < earliest) earliest = record.Expires;
        }
        if (emptyKeys is not null)
        {
            foreach (var key in emptyKeys) _byKey.Remove(key);
        }
        _refusalSweeps.Swept(now, earliest);
        return removed;
    }

    private int PruneLocked(Dictionary<PeerId, ProviderRecord> providers, DateTimeOffset now)
    {
        var removed = 0;
        foreach (var (peer, record) in providers)
        {
            if (record.Expires <= now && providers.Remove(peer))
            {
                removed++;
                Forget(peer);
            }
        }
        return removed;
    }

    private void Forget(PeerId provider)
    {
        var count = _keysByProvider.GetValueOrDefault(provider);
        if (count > 1) _keysByProvider[provider] = count - 1;
        else _keysByProvider.Remove(provider);
    }
}
