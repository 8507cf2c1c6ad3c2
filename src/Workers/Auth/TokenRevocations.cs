using System.Globalization;
using System.Text;
using P2PInference.Facilities.Store;

namespace P2PInference.Workers.Auth;

/// <summary>
/// Tokens revoked one by one (logout), in the store under
/// <c>revoked-tokens/&lt;expiry, 12-digit unix seconds&gt;/&lt;jti&gt;</c>, the value naming the user.
/// </summary>
/// <remarks>
/// The key starts with the token's own expiry, which the validator reads from the token anyway, so
/// a lookup is one point read, and the entries sort by expiry: a sweep deletes from the front until
/// it reaches one still in force. A record is needed only while its token could still be accepted,
/// so the store holds at most the tokens revoked within one token lifetime (plus clock skew).
/// </remarks>
internal sealed class TokenRevocations
{
    private const int MaxSweep = 1_000;

    private readonly IKeyValueStore _store;
    private readonly TimeProvider _time;
    private readonly TimeSpan _clockSkew;

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
        await _store.PutAsync(KeyOf(claims), Encoding.UTF8.GetBytes(claims.Subject), cancellationToken);
        await SweepAsync(cancellationToken);
    }

    /// <summary>Deletes records of tokens the validator refuses as expired anyway; at most a bounded batch per call.</summary>
    public async ValueTask<int> SweepAsync(CancellationToken cancellationToken)
    {
        // Past expiry plus skew the validator refuses the token without asking us.
        var horizon = (_time.GetUtcNow() - _clockSkew).ToUnixTimeSeconds();
        var expired = new List<string>();
        await foreach (var (key, _) in _store.ScanAsync("", cancellationToken))
        {
            if (expired.Count >= MaxSweep || !TryReadExpiry(key, out var expiresAt) || expiresAt > horizon) break;
            expired.Add(key);
        }

        foreach (var key in expired) await _store.DeleteAsync(key, cancellationToken);
        return expired.Count;
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
