using System.Text;
using System.Text.Json;
using P2PInference.Facilities.Identity;

namespace P2PInference.Workers.Auth;

/// <summary>
/// Checks tokens made by <see cref="JwtIssuer"/> given only the Auth worker's public key, so it
/// also works outside the Auth worker. Anything wrong — size, shape, encoding, algorithm, key id,
/// signature, issuer, times — ends in <see cref="AuthException"/> with
/// <see cref="AuthErrorCode.Unauthenticated"/>.
/// </summary>
/// <remarks>
/// The algorithm is fixed, not taken from the token: the header must say <c>EdDSA</c> and the
/// signature must verify under the configured Ed25519 key, so <c>"none"</c>, HMAC-with-the-public-key
/// and other algorithm-confusion tricks are refused. The signature is checked before the payload is
/// parsed, so unsigned JSON is never interpreted.
/// </remarks>
public sealed class JwtValidator
{
    private const int MaxClaimLength = 512;

    private static readonly JsonDocumentOptions JsonOptions = new()
    {
        MaxDepth = 4,
        AllowTrailingCommas = false,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowDuplicateProperties = false,
    };

    private readonly PublicKey _key;
    private readonly TimeProvider _time;

    public JwtValidator(PublicKey verificationKey, string issuer, TimeProvider timeProvider, TimeSpan clockSkew)
    {
        ArgumentNullException.ThrowIfNull(verificationKey);
        if (verificationKey.Type != Facilities.Identity.Proto.KeyType.Ed25519)
        {
            throw new ArgumentException("Tokens are verified with an Ed25519 key.", nameof(verificationKey));
        }

        ArgumentException.ThrowIfNullOrWhiteSpace(issuer);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThan(clockSkew, TimeSpan.Zero);
        _key = verificationKey;
        _time = timeProvider;
        Issuer = issuer;
        ClockSkew = clockSkew;
        KeyId = Jwt.KeyId(verificationKey);
    }

    public string Issuer { get; }

    public TimeSpan ClockSkew { get; }

    public string KeyId { get; }

    /// <summary>The token's claims when it is genuine and current.</summary>
    /// <exception cref="AuthException">Unauthenticated: the token is missing, malformed, forged, from another issuer, expired or not yet valid.</exception>
    public JwtClaims Validate(string? token)
    {
        if (string.IsNullOrEmpty(token))
        {
            throw Fail("token is missing");
        }

        if (token.Length > Jwt.MaxTokenLength)
        {
            throw Fail($"token is longer than {Jwt.MaxTokenLength} characters");
        }

        var span = token.AsSpan();
        var firstDot = span.IndexOf('.');
        var lastDot = span.LastIndexOf('.');
        if (firstDot < 0 || lastDot == firstDot || span[(firstDot + 1)..lastDot].Contains('.'))
        {
            throw Fail("token is not a compact JWS (three dot-separated parts)");
        }

        if (!Jwt.TryDecode(span[..firstDot], out var headerBytes)
            || !Jwt.TryDecode(span[(firstDot + 1)..lastDot], out var payloadBytes)
            || !Jwt.TryDecode(span[(lastDot + 1)..], out var signature))
        {
            throw Fail("token is not valid base64url");
        }

        CheckHeader(headerBytes);
        if (!_key.Verify(Encoding.ASCII.GetBytes(token, 0, lastDot), signature))
        {
            throw Fail("token signature is invalid");
        }

        return ReadClaims(payloadBytes);
    }

    private void CheckHeader(byte[] headerBytes)
    {
        using var header = Parse(headerBytes, "header");
        var alg = OptionalString(header.RootElement, "alg");
        if (alg != Jwt.Algorithm)
        {
            throw Fail($"token algorithm must be {Jwt.Algorithm}");
        }

        var typ = OptionalString(header.RootElement, "typ");
        if (typ is not null && typ != Jwt.Type)
        {
            throw Fail("token type must be JWT");
        }

        var kid = OptionalString(header.RootElement, "kid");
        if (kid is not null && kid != KeyId)
        {
            throw Fail("token was signed by an unknown key");
        }

        // RFC 7515 §4.1.11: extensions we do not understand must make the token invalid.
        if (header.RootElement.TryGetProperty("crit", out _))
        {
            throw Fail("token has critical header extensions");
        }
    }

    private JwtClaims ReadClaims(byte[] payloadBytes)
    {
        using var payload = Parse(payloadBytes, "payload");
        var root = payload.RootElement;
        var iss = OptionalString(root, "iss");
        if (iss != Issuer)
        {
            throw Fail("token issuer is not accepted");
        }

        var sub = OptionalString(root, "sub");
        var email = OptionalString(root, "email");
        var jti = OptionalString(root, "jti");
        if (string.IsNullOrEmpty(sub) || string.IsNullOrEmpty(email) || string.IsNullOrEmpty(jti))
        {
            throw Fail("token lacks its subject, email or id");
        }

        var exp = OptionalTime(root, "exp") ?? throw Fail("token has no expiry");
        var iat = OptionalTime(root, "iat") ?? throw Fail("token has no issue time");
        var nbf = OptionalTime(root, "nbf");
        var now = _time.GetUtcNow();
        if (now >= exp + ClockSkew)
        {
            throw Fail("token has expired");
        }

        if (iat - ClockSkew > now || (nbf is { } notBefore && notBefore - ClockSkew > now))
        {
            throw Fail("token is not valid yet");
        }

        return new JwtClaims(iss, sub, email, iat, exp, jti);
    }

    private static JsonDocument Parse(byte[] json, string part)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw Fail($"token {part} is not valid JSON", e);
        }

        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw Fail($"token {part} is not a JSON object");
        }

        return document;
    }

    private static string? OptionalString(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value))
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw Fail($"token claim '{name}' is not a string");
        }

        var text = value.GetString()!;
        return text.Length <= MaxClaimLength ? text : throw Fail($"token claim '{name}' is too long");
    }

    private static DateTimeOffset? OptionalTime(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value))
        {
            return null;
        }

        // NumericDate, whole seconds, within what DateTimeOffset can hold.
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var seconds) || seconds < 0 || seconds > 253_402_300_799)
        {
            throw Fail($"token claim '{name}' is not a valid time");
        }

        return DateTimeOffset.FromUnixTimeSeconds(seconds);
    }

    private static AuthException Fail(string message, Exception? inner = null) => AuthException.Unauthenticated(message, inner);
}
