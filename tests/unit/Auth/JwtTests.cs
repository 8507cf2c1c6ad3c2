using System.Buffers.Text;
using System.Text.Json;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class JwtTests
{
    private const string Issuer = "p2pinference-auth";
    private FakeTimeProvider _time = null!;
    private KeyPair _key = null!;
    private JwtIssuer _issuer = null!;
    private JwtValidator _validator = null!;
    private Random _random = null!;

    [SetUp]
    public void SetUp()
    {
        _random = TestSeed.CreateRandom();
        _time = new FakeTimeProvider();
        _key = KeyPair.FromRandom(_random);
        _issuer = new JwtIssuer(_key, Issuer, TimeSpan.FromHours(24), _time);
        _validator = new JwtValidator(_key.PublicKey, Issuer, _time, TimeSpan.FromSeconds(30));
    }

    [Test]
    public void Validate_ReturnsTheClaims_OfAnIssuedToken()
    {
        var (token, issued) = _issuer.Issue("usr_1", "alice@example.com");
        var claims = _validator.Validate(token);
        Assert.That(claims, Is.EqualTo(issued));
        Assert.That(claims.Subject, Is.EqualTo("usr_1"));
        Assert.That(claims.ExpiresAt, Is.EqualTo(_time.GetUtcNow() + TimeSpan.FromHours(24)));
    }

    [Test]
    public void Issue_WritesAStandardEdDsaHeaderAndPayload()
    {
        var (token, _) = _issuer.Issue("usr_1", "alice@example.com");
        var parts = token.Split('.');
        Assert.That(parts, Has.Length.EqualTo(3));
        using var header = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[0]));
        using var payload = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[1]));
        Assert.Multiple(() =>
        {
            Assert.That(header.RootElement.GetProperty("alg").GetString(), Is.EqualTo("EdDSA"));
            Assert.That(header.RootElement.GetProperty("typ").GetString(), Is.EqualTo("JWT"));
            Assert.That(header.RootElement.GetProperty("kid").GetString(), Is.EqualTo(_key.PeerId.ToString()));
            Assert.That(payload.RootElement.GetProperty("iss").GetString(), Is.EqualTo(Issuer));
            Assert.That(payload.RootElement.GetProperty("sub").GetString(), Is.EqualTo("usr_1"));
            Assert.That(payload.RootElement.GetProperty("email").GetString(), Is.EqualTo("alice@example.com"));
            Assert.That(payload.RootElement.GetProperty("iat").GetInt64(), Is.EqualTo(_time.GetUtcNow().ToUnixTimeSeconds()));
            Assert.That(payload.RootElement.GetProperty("exp").GetInt64(), Is.EqualTo(_time.GetUtcNow().ToUnixTimeSeconds() + 86_400));
            Assert.That(payload.RootElement.GetProperty("jti").GetString(), Is.Not.Empty);
            Assert.That(_key.PublicKey.Verify(System.Text.Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]), Base64Url.DecodeFromChars(parts[2])), Is.True);
        });
        Assert.That(_issuer.Issue("usr_1", "alice@example.com").Token, Is.Not.EqualTo(token), "jti makes each token unique");
    }

    [Test]
    public void Validate_AcceptsAt2359_AndRefusesAt2401()
    {
        var (token, _) = _issuer.Issue("usr_1", "alice@example.com");
        _time.Advance(TimeSpan.FromHours(23) + TimeSpan.FromMinutes(59));
        Assert.That(_validator.Validate(token).Subject, Is.EqualTo("usr_1"));
        _time.Advance(TimeSpan.FromMinutes(2));
        Assert.That(AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(token)).Message, Does.Contain("expired"));
    }

    [Test]
    public void Validate_AllowsTheClockSkew_AroundExpiry()
    {
        var (token, _) = _issuer.Issue("usr_1", "alice@example.com");
        _time.Advance(TimeSpan.FromHours(24) + TimeSpan.FromSeconds(29));
        Assert.DoesNotThrow(() => _validator.Validate(token));
        _time.Advance(TimeSpan.FromSeconds(1));
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(token));
    }

    [Test]
    public void Validate_Refuses_ATokenFromAnotherKey()
    {
        var other = new JwtIssuer(KeyPair.FromRandom(_random), Issuer, TimeSpan.FromHours(24), _time);
        var (token, _) = other.Issue("usr_1", "alice@example.com");
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(token));

        // Even when the forger claims our key id, the signature gives it away.
        var forged = Forge(Header(kid: _validator.KeyId), Payload(), KeyPair.FromRandom(_random));
        Assert.That(AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(forged)).Message, Does.Contain("signature"));
    }

    [Test]
    public void Validate_Refuses_AlgNone_AndOtherAlgorithms()
    {
        foreach (var alg in new[] { "none", "None", "HS256", "RS256", "ES256", "eddsa", "" })
        {
            var unsigned = Forge(Header(alg), Payload(), signer: null);
            var signed = Forge(Header(alg), Payload(), _key);
            AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(unsigned));
            Assert.That(AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(signed)).Message, Does.Contain("algorithm"), alg);
        }

        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(Forge("{\"typ\":\"JWT\"}", Payload(), _key)));
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(Forge("{\"alg\":null}", Payload(), _key)));
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(Forge("{\"alg\":[\"EdDSA\"]}", Payload(), _key)));
    }

    [Test]
    public void Validate_Refuses_ATamperedPayload()
    {
        var (token, _) = _issuer.Issue("usr_1", "alice@example.com");
        var parts = token.Split('.');
        var payload = System.Text.Encoding.UTF8.GetString(Base64Url.DecodeFromChars(parts[1])).Replace("usr_1", "usr_2", StringComparison.Ordinal);
        var tampered = parts[0] + "." + Base64Url.EncodeToString(System.Text.Encoding.UTF8.GetBytes(payload)) + "." + parts[2];
        Assert.That(AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(tampered)).Message, Does.Contain("signature"));
    }

    [Test]
    public void Validate_Refuses_EveryTruncation()
    {
        var (token, _) = _issuer.Issue("usr_1", "alice@example.com");
        for (var length = 0; length < token.Length; length++)
        {
            AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(token[..length]));
        }
    }

    [Test]
    public void Validate_Refuses_EverySingleCharacterChange()
    {
        var (token, _) = _issuer.Issue("usr_1", "alice@example.com");
        for (var i = 0; i < token.Length; i++)
        {
            var chars = token.ToCharArray();
            chars[i] = chars[i] == 'A' ? 'B' : 'A';
            var changed = new string(chars);
            AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(changed));
        }
    }

    [Test]
    public void Validate_Refuses_RandomGarbage()
    {
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"\0é";
        for (var i = 0; i < 500; i++)
        {
            var garbage = new string(Enumerable.Range(0, _random.Next(0, 600)).Select(_ => alphabet[_random.Next(alphabet.Length)]).ToArray());
            AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(garbage));
        }

        // Well-formed base64url parts whose contents are random bytes.
        for (var i = 0; i < 200; i++)
        {
            var parts = Enumerable.Range(0, 3).Select(_ =>
            {
                var bytes = new byte[_random.Next(1, 200)];
                _random.NextBytes(bytes);
                return Base64Url.EncodeToString(bytes);
            });
            var garbage = string.Join('.', parts);
            AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(garbage));
        }
    }

    [Test]
    public void Validate_Refuses_OversizedTokens_BeforeParsing()
    {
        var huge = new string('A', Jwt.MaxTokenLength + 1);
        Assert.That(AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(huge)).Message, Does.Contain("longer"));
        var hugeButSigned = Forge(Header(), Payload(extra: ",\"pad\":\"" + new string('x', Jwt.MaxTokenLength) + "\""), _key);
        Assert.That(AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(hugeButSigned)).Message, Does.Contain("longer"));
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(new string('.', 50_000_000)));
    }

    [Test]
    public void Validate_Refuses_MissingOrEmptyTokens()
    {
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(null));
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(string.Empty));
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(".."));
    }

    [Test]
    public void Validate_Refuses_NonCanonicalOrPaddedBase64()
    {
        var (token, _) = _issuer.Issue("usr_1", "alice@example.com");
        var parts = token.Split('.');
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(token + "=="));
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(parts[0] + ". " + parts[1] + "." + parts[2]));
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(token.Replace('-', '+').Replace('_', '/') + "+"));

        // A 64-byte signature is 86 characters whose last one carries 2 unused bits: setting them is another spelling.
        var last = parts[2][^1];
        var alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        var sibling = alphabet[alphabet.IndexOf(last, StringComparison.Ordinal) ^ 1];
        AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(parts[0] + "." + parts[1] + "." + parts[2][..^1] + sibling));
    }

    [Test]
    public void Validate_Refuses_WrongIssuer_KeyId_Type_AndCriticalHeaders()
    {
        Assert.That(Message(Forge(Header(), Payload(iss: "someone-else"), _key)), Does.Contain("issuer"));
        Assert.That(Message(Forge(Header(kid: "12D3KooWother"), Payload(), _key)), Does.Contain("unknown key"));
        Assert.That(Message(Forge("{\"alg\":\"EdDSA\",\"typ\":\"JWS+other\"}", Payload(), _key)), Does.Contain("type"));
        Assert.That(Message(Forge("{\"alg\":\"EdDSA\",\"crit\":[\"exp\"]}", Payload(), _key)), Does.Contain("critical"));
        Assert.That(Message(Forge("{\"alg\":\"EdDSA\",\"alg\":\"none\"}", Payload(), _key)), Does.Contain("JSON"));
        Assert.That(Message(Forge("[\"EdDSA\"]", Payload(), _key)), Does.Contain("object"));
        Assert.That(Message(Forge("{\"alg\":\"EdDSA\"", Payload(), _key)), Does.Contain("JSON"));
    }

    [Test]
    public void Validate_Refuses_MissingOrMistypedClaims()
    {
        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        Assert.That(Message(Forge(Header(), $"{{\"iss\":\"{Issuer}\",\"sub\":\"u\",\"email\":\"e\",\"jti\":\"j\",\"iat\":{now}}}", _key)), Does.Contain("expiry"));
        Assert.That(Message(Forge(Header(), $"{{\"iss\":\"{Issuer}\",\"sub\":\"u\",\"email\":\"e\",\"jti\":\"j\",\"exp\":{now + 60}}}", _key)), Does.Contain("issue time"));
        Assert.That(Message(Forge(Header(), $"{{\"iss\":\"{Issuer}\",\"email\":\"e\",\"jti\":\"j\",\"iat\":{now},\"exp\":{now + 60}}}", _key)), Does.Contain("subject"));
        Assert.That(Message(Forge(Header(), $"{{\"iss\":\"{Issuer}\",\"sub\":7,\"email\":\"e\",\"jti\":\"j\",\"iat\":{now},\"exp\":{now + 60}}}", _key)), Does.Contain("not a string"));
        Assert.That(Message(Forge(Header(), $"{{\"iss\":\"{Issuer}\",\"sub\":\"u\",\"email\":\"e\",\"jti\":\"j\",\"iat\":{now},\"exp\":\"{now + 60}\"}}", _key)), Does.Contain("not a valid time"));
        Assert.That(Message(Forge(Header(), $"{{\"iss\":\"{Issuer}\",\"sub\":\"u\",\"email\":\"e\",\"jti\":\"j\",\"iat\":{now},\"exp\":1e300}}", _key)), Does.Contain("not a valid time"));
        Assert.That(Message(Forge(Header(), $"{{\"iss\":\"{Issuer}\",\"sub\":\"u\",\"email\":\"e\",\"jti\":\"j\",\"iat\":{now},\"exp\":-1}}", _key)), Does.Contain("not a valid time"));
        Assert.That(Message(Forge(Header(), "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":1}}}}}", _key)), Does.Contain("JSON"));
    }

    [Test]
    public void Validate_Refuses_TokensNotYetValid()
    {
        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        Assert.That(Message(Forge(Header(), Payload(iat: now + 3600), _key)), Does.Contain("not valid yet"));
        Assert.That(Message(Forge(Header(), Payload(extra: $",\"nbf\":{now + 3600}"), _key)), Does.Contain("not valid yet"));
        Assert.DoesNotThrow(() => _validator.Validate(Forge(Header(), Payload(extra: $",\"nbf\":{now + 10}"), _key)), "within the clock skew");
    }

    [Test]
    public void Validator_WorksStandalone_FromThePublicKeyAlone()
    {
        var (token, _) = _issuer.Issue("usr_1", "alice@example.com");
        var envelope = _key.PublicKey.ToProtobuf();
        var standalone = new JwtValidator(PublicKey.FromProtobuf(envelope), Issuer, _time, TimeSpan.Zero);
        Assert.That(standalone.Validate(token).Email, Is.EqualTo("alice@example.com"));
    }

    private string Message(string token) => AuthAssert.Throws(AuthErrorCode.Unauthenticated, () => _validator.Validate(token)).Message;

    private string Message(string header, string payload, KeyPair key) => Message(Forge(header, payload, key));

    private static string Header(string alg = "EdDSA", string? kid = null) =>
        kid is null ? $"{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}" : $"{{\"alg\":\"{alg}\",\"typ\":\"JWT\",\"kid\":\"{kid}\"}}";

    private string Payload(string iss = Issuer, long? iat = null, string extra = "")
    {
        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        return $"{{\"iss\":\"{iss}\",\"sub\":\"usr_1\",\"email\":\"alice@example.com\",\"iat\":{iat ?? now},\"exp\":{(iat ?? now) + 3600},\"jti\":\"x\"{extra}}}";
    }

    private static string Forge(string header, string payload, KeyPair? signer)
    {
        var input = Base64Url.EncodeToString(System.Text.Encoding.UTF8.GetBytes(header)) + "." + Base64Url.EncodeToString(System.Text.Encoding.UTF8.GetBytes(payload));
        return input + "." + (signer is null ? string.Empty : Base64Url.EncodeToString(signer.Sign(System.Text.Encoding.ASCII.GetBytes(input))));
    }
}
