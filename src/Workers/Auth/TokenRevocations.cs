using System.Globalization;
using System.Text;
using P2PInference.Facilities.Store;
using P2PInference.Facilities.Threading;

namespace P2PInference.Workers.Auth;

/// <summary>
/// Tokens revoked one by one (logout), in the store under
/// <c>revoked-tokens/&lt;expiry, 12-digit unix seconds&gt;/&lt;jti&gt;</c>, the value naming the user.
/// </summary>
/// <remarks>
/// <para>The key starts with the token's own expiry, which the validator reads from the token anyway, so
/// a lookup is one point read, and the entries sort by expiry: a sweep deletes from the front until
/// it reaches one still in force. A record is needed only while its token could still be accepted,
/// so the store holds at most the tokens revoked within one token lifetime (plus clock skew).</para>
/// <para>The sweep finds expired records in an index of the keys kept in memory, filled by one scan at
/// the first revocation after start. It used to scan the store on every logout, and a store's scan
/// walks every record, old versions included, under the lock a waiting checkpoint blocks: each logout
/// could stall every read and write.</para>
/// </remarks>
internal sealed class TokenRevocations
{
    private const int MaxSweep = 1_000;

    private readonly IKeyValueStore _store;
    private readonly TimeProvider _time;
    private readonly TimeSpan _clockSkew;

    // The store's keys in expiry order; guarded by itself. Complete once _loaded has completed.
    private readonly SortedSet<string> _keys = new(StringComparer.Ordinal);
    private Task? _loaded;

    public TokenRevocations(IKeyValueStore store, TimeProvider time, TimeSpan clockSkew)
    {
        _store = store.SubStore("revoked-tokens");
        _time = time;
        _clockSkew = clockSkew;
    }

    public async ValueTask<bool> IsRevokedAsync(JwtClaims claims, CancellationToken cancellationToken) =>
        await _store.GetAsync(KeyOf(claims), cancellationToken) is not null;

    /// <summary>Records the revocation (durable on return), then drops records whose tokens have expired.</summary>
    public async ValueTask RevokeAsync(JwtClaims claims, CancellationToken cancellationToken)
    {
        var key = KeyOf(claims);
        await _store.PutAsync(key, Encoding.UTF8.GetBytes(claims.Subject), cancellationToken);
        lock (_keys)
        {
            _keys.Add(key);
        }

        await SweepAsync(cancellationToken);
    }

    /// <summary>Deletes records of tokens the validator refuses as expired anyway; at most a bounded batch per call.</summary>
    public async ValueTask<int> SweepAsync(CancellationToken cancellationToken)
    {
        await LoadedAsync(cancellationToken);
        // Past expiry plus skew the validator refuses the token without asking us.
        var horizon = (_time.GetUtcNow() - _clockSkew).ToUnixTimeSeconds();
        var expired = new List<string>();
        lock (_keys)
        {
            foreach (var key in _keys)
            {
                if (expired.Count >= MaxSweep || !TryReadExpiry(key, out var expiresAt) || expiresAt > horizon) break;
                expired.Add(key);
            }
        }

        foreach (var key in expired)
        {
            await _store.DeleteAsync(key, cancellationToken);
            lock (_keys)
            {
                _keys.Remove(key);
            }
        }

        return expired.Count;
    }

    /// <summary>
    /// Fills the index from the store, once: records written before a restart are swept too. The
    /// load is shared, so it runs on no caller's token (one caller's disconnect used to fail every
    /// logout waiting on it, though their revocations were written); each caller stops waiting on
    /// its own token, and the load is started outside the lock.
    /// </summary>
    private async Task LoadedAsync(CancellationToken cancellationToken)
    {
        Task loading;
        TaskCompletionSource? starting = null;
        lock (_keys)
        {
            // A load that failed is tried again by the next caller.
            if (_loaded is null || _loaded.IsFaulted || _loaded.IsCanceled)
            {
                starting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _loaded = starting.Task;
            }

            loading = _loaded;
        }

        if (starting is not null)
        {
            _ = loading.ObserveFailureAsync();
            _ = RunLoadAsync(starting);
        }

        await loading.WaitOrCancelAsync(cancellationToken);
    }

    private async Task RunLoadAsync(TaskCompletionSource done)
    {
        try
        {
            await LoadAsync(CancellationToken.None);
            done.SetResult();
        }
        catch (Exception e)
        {
            done.SetException(e);
        }
    }

    private async Task LoadAsync(CancellationToken cancellationToken)
    {
        var found = new List<string>();
        await foreach (var (key, _) in _store.ScanAsync("", cancellationToken))
        {
            found.Add(key);
        }

        // Merged, not replaced: revocations recorded while the scan ran are in the index already.
        lock (_keys)
        {
            _keys.UnionWith(found);
        }
    }

    private static string KeyOf(JwtClaims claims) =>
        claims.ExpiresAt.ToUnixTimeSeconds().ToString("D12", CultureInfo.InvariantCulture) + "/" + claims.TokenId;

    private static bool TryReadExpiry(string key, out long expiresAt)
    {
        var slash = key.IndexOf('/', StringComparison.Ordinal);
        expiresAt = 0;
        return slash > 0 && long.TryParse(key.AsSpan(0, slash), NumberStyles.None, CultureInfo.InvariantCulture, out expiresAt);
    }
}
