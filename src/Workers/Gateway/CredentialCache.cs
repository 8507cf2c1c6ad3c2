using System.Buffers;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Gateway;

/// <summary>
/// Auth's verdicts on credentials, kept briefly on the injected clock so that each request does not
/// cost a round trip to Auth: an accepted credential for the TTL (never past a token's own expiry),
/// a refused one for the (short) negative TTL. Entries are keyed by the credential's SHA-256, so the
/// cache holds no secrets. At most <c>capacity</c> entries: expired ones go first, then the least
/// recently used.
/// </summary>
public sealed class CredentialCache
{
    private readonly TimeProvider _time;
    private readonly TimeSpan _ttl;
    private readonly TimeSpan _negativeTtl;
    private readonly int _capacity;
    private readonly object _gate = new();
    private readonly Dictionary<Key, Entry> _entries = [];

    public CredentialCache(TimeProvider time, TimeSpan ttl, TimeSpan negativeTtl, int capacity)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThan(ttl, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(negativeTtl, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _time = time;
        _ttl = ttl;
        _negativeTtl = negativeTtl;
        _capacity = capacity;
    }

    public int Count
    {
        get
        {
            lock (_gate) return _entries.Count;
        }
    }

    /// <summary>True when a verdict is cached: <paramref name="caller"/> when accepted, <paramref name="refusal"/> when refused.</summary>
    public bool TryGet(GatewayCredential credential, out AuthenticatedCaller? caller, out RpcException? refusal)
    {
        var key = KeyOf(credential);
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            if (_entries.TryGetValue(key, out var entry))
            {
                if (entry.ExpiresAt > now)
                {
                    entry.LastUsed = now;
                    caller = entry.Caller;
                    refusal = entry.Refusal;
                    return true;
                }
                _entries.Remove(key);
            }
        }
        caller = null;
        refusal = null;
        return false;
    }

    public void AddAccepted(GatewayCredential credential, AuthenticatedCaller caller)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var now = _time.GetUtcNow();
        var expires = now + _ttl;
        if (caller.ExpiresAt is { } tokenExpiry && tokenExpiry < expires) expires = tokenExpiry;
        Add(credential, new Entry(caller, null, expires, now));
    }

    public void AddRefused(GatewayCredential credential, RpcException refusal)
    {
        ArgumentNullException.ThrowIfNull(refusal);
        var now = _time.GetUtcNow();
        Add(credential, new Entry(null, refusal, now + _negativeTtl, now));
    }

    /// <summary>Forgets the verdict on <paramref name="credential"/>: the next use asks Auth again.</summary>
    public void Remove(GatewayCredential credential)
    {
        var key = KeyOf(credential);
        lock (_gate) _entries.Remove(key);
    }

    /// <summary>Forgets every accepted login token of <paramref name="userId"/> (their API keys stay): after "revoke all tokens".</summary>
    public void RemoveTokensOf(string userId)
    {
        ArgumentNullException.ThrowIfNull(userId);
        lock (_gate)
        {
            foreach (var (key, entry) in _entries)
                if (entry.Caller is { KeyId.Length: 0 } caller && caller.UserId == userId) _entries.Remove(key);
        }
    }

    private void Add(GatewayCredential credential, Entry entry)
    {
        if (entry.ExpiresAt <= entry.LastUsed) return;
        var key = KeyOf(credential);
        lock (_gate)
        {
            if (!_entries.ContainsKey(key) && _entries.Count >= _capacity) EvictLocked(entry.LastUsed);
            _entries[key] = entry;
        }
    }

    private void EvictLocked(DateTimeOffset now)
    {
        foreach (var (key, entry) in _entries)
            if (entry.ExpiresAt <= now) _entries.Remove(key);
        var target = _capacity - Math.Max(1, _capacity / 10);
        if (_entries.Count <= target) return;
        foreach (var (key, _) in _entries.OrderBy(e => e.Value.LastUsed).Take(_entries.Count - target).ToArray())
            _entries.Remove(key);
    }

    /// <summary>SHA-256 of the kind and the value, hashed where they lie: every request looks its credential up.</summary>
    private static Key KeyOf(GatewayCredential credential)
    {
        var length = 2 + Encoding.UTF8.GetMaxByteCount(credential.Value.Length);
        byte[]? rented = null;
        var text = length <= 1024 ? stackalloc byte[length] : (rented = ArrayPool<byte>.Shared.Rent(length));
        try
        {
            text[0] = (byte)(credential.Kind == CredentialKind.ApiKey ? 'k' : 't');
            text[1] = (byte)':';
            var written = 2 + Encoding.UTF8.GetBytes(credential.Value, text[2..]);
            Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(text[..written], hash);
            var words = MemoryMarshal.Cast<byte, ulong>(hash);
            return new Key(words[0], words[1], words[2], words[3]);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private readonly record struct Key(ulong A, ulong B, ulong C, ulong D);

    private sealed class Entry(AuthenticatedCaller? caller, RpcException? refusal, DateTimeOffset expiresAt, DateTimeOffset lastUsed)
    {
        public AuthenticatedCaller? Caller { get; } = caller;
        public RpcException? Refusal { get; } = refusal;
        public DateTimeOffset ExpiresAt { get; } = expiresAt;
        public DateTimeOffset LastUsed { get; set; } = lastUsed;
    }
}
