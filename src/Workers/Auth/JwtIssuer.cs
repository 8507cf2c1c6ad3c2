using System.Buffers;
using System.Text;
using System.Text.Json;
using P2PInference.Facilities.Identity;

namespace P2PInference.Workers.Auth;

/// <summary>
/// Issues compact JWS tokens (RFC 7515/7519) signed with EdDSA (RFC 8037) by the Auth worker's
/// Ed25519 key. Header <c>{"alg":"EdDSA","typ":"JWT","kid":&lt;PeerId&gt;}</c>; payload
/// <c>{iss, sub, email, iat, exp, jti}</c>, times in whole seconds from the <see cref="TimeProvider"/>.
/// </summary>
public sealed class JwtIssuer
{
    private readonly KeyPair _key;
    private readonly TimeProvider _time;
    private readonly string _encodedHeader;
    private readonly IRandomSource _random;

    /// <param name="randomSource">Token ids (<c>jti</c>). Null: the system CSPRNG; seeded only in simulations.</param>
    public JwtIssuer(KeyPair signingKey, string issuer, TimeSpan lifetime, TimeProvider timeProvider, IRandomSource? randomSource = null)
    {
        ArgumentNullException.ThrowIfNull(signingKey);
        ArgumentException.ThrowIfNullOrWhiteSpace(issuer);
        ArgumentOutOfRangeException.ThrowIfLessThan(lifetime, TimeSpan.FromSeconds(1));
        ArgumentNullException.ThrowIfNull(timeProvider);
        _key = signingKey;
        _time = timeProvider;
        _random = randomSource ?? SystemRandomSource.Instance;
        Issuer = issuer;
        Lifetime = lifetime;
        KeyId = Jwt.KeyId(signingKey.PublicKey);
        _encodedHeader = Jwt.Encode(Json(writer =>
        {
            writer.WriteString("alg", Jwt.Algorithm);
            writer.WriteString("typ", Jwt.Type);
            writer.WriteString("kid", KeyId);
        }));
    }

    public string Issuer { get; }

    public TimeSpan Lifetime { get; }

    public string KeyId { get; }

    /// <summary>The key that verifies this issuer's tokens, for a standalone <see cref="JwtValidator"/>.</summary>
    public PublicKey PublicKey => _key.PublicKey;

    /// <summary>A token for <paramref name="subject"/>, valid from now for <see cref="Lifetime"/>.</summary>
    /// <param name="issuedNoEarlierThan">
    /// The earliest <c>iat</c> the token may carry: after "revoke all tokens" in the current second a new
    /// token must not look as old as the revoked ones, so it is dated the next second (within the validators' clock skew).
    /// </param>
    public (string Token, JwtClaims Claims) Issue(string subject, string email, DateTimeOffset? issuedNoEarlierThan = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(subject);
        ArgumentException.ThrowIfNullOrEmpty(email);
        var issuedAt = DateTimeOffset.FromUnixTimeSeconds(_time.GetUtcNow().ToUnixTimeSeconds());
        if (issuedNoEarlierThan is { } floor && floor > issuedAt)
            issuedAt = DateTimeOffset.FromUnixTimeSeconds(floor.ToUnixTimeSeconds());
        var expiresAt = issuedAt + TimeSpan.FromSeconds(Math.Floor(Lifetime.TotalSeconds));
        Span<byte> id = stackalloc byte[16];
        _random.Fill(id);
        var claims = new JwtClaims(Issuer, subject, email, issuedAt, expiresAt, Jwt.Encode(id));
        var payload = Jwt.Encode(Json(writer =>
        {
            writer.WriteString("iss", claims.Issuer);
            writer.WriteString("sub", claims.Subject);
            writer.WriteString("email", claims.Email);
            writer.WriteNumber("iat", claims.IssuedAt.ToUnixTimeSeconds());
            writer.WriteNumber("exp", claims.ExpiresAt.ToUnixTimeSeconds());
            writer.WriteString("jti", claims.TokenId);
        }));
        var signingInput = _encodedHeader + "." + payload;
        var signature = _key.Sign(Encoding.ASCII.GetBytes(signingInput));
        return (signingInput + "." + Jwt.Encode(signature), claims);
    }

    private static byte[] Json(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}
