using System.Buffers.Text;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Auth;

/// <summary>
/// Hostile requests, as the RPC layer will hand them over: each gets a typed
/// <see cref="AuthException"/>, changes nothing stored, and the service keeps serving.
/// </summary>
[TestFixture]
public sealed class AuthServiceBadInputTests
{
    private AuthHarness _auth = null!;

    [SetUp]
    public async Task SetUp() => _auth = await AuthHarness.CreateAsync();

    [TearDown]
    public async Task TearDown() => await _auth.DisposeAsync();

    [Test, CancelAfter(10000)]
    public async Task ForgedTokens_AreUnauthenticated_Everywhere(CancellationToken ct)
    {
        var (email, userId, token) = await _auth.RegisterAndLoginAsync(ct);
        var key = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "k" }, ct);
        var before = await _auth.SnapshotAsync(ct);

        var stranger = KeyPair.FromRandom(TestSeed.CreateRandom());
        var otherIssuer = new JwtIssuer(stranger, _auth.Options.Issuer, TimeSpan.FromHours(24), _auth.Time).Issue(userId, email).Token;
        var parts = token.Split('.');
        var noneHeader = Base64Url.EncodeToString("{\"alg\":\"none\",\"typ\":\"JWT\"}"u8);
        var forged = new[]
        {
            otherIssuer,
            noneHeader + "." + parts[1] + ".",
            noneHeader + "." + parts[1] + "." + parts[2],
            parts[0] + "." + parts[1],
            parts[0] + "." + Base64Url.EncodeToString(System.Text.Encoding.UTF8.GetBytes($"{{\"iss\":\"{_auth.Options.Issuer}\",\"sub\":\"{userId}\",\"email\":\"{email}\",\"iat\":0,\"exp\":99999999999,\"jti\":\"x\"}}")) + "." + parts[2],
            token[..(token.Length / 2)],
            "garbage",
            new string('x', 100_000),
        };

        foreach (var bad in forged)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { Token = bad }, ct));
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = bad, Name = "evil" }, ct));
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = bad }, ct));
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = bad, KeyId = key.KeyId }, ct));
        }

        Assert.That(await _auth.SnapshotAsync(ct), Is.EqualTo(before));
        Assert.DoesNotThrowAsync(() => _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = key.ApiKey }, ct));
    }

    [Test, CancelAfter(10000)]
    public async Task ATokenForAUserThatDoesNotExist_IsUnauthenticated(CancellationToken ct)
    {
        // Genuinely signed (say, by this worker before its store was replaced), but nobody has that id.
        var orphan = new JwtIssuer(_auth.Key, _auth.Options.Issuer, TimeSpan.FromHours(1), _auth.Time).Issue("usr_" + new string('0', 32), "ghost@example.com").Token;
        Assert.That(_auth.Service.TokenValidator.Validate(orphan).Subject, Does.StartWith("usr_"));
        var error = await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { Token = orphan }, ct));
        Assert.That(error.Message, Does.Contain("does not exist"));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = orphan, Name = "k" }, ct));
        Assert.That(await _auth.SnapshotAsync(ct), Is.Empty);
    }

    [Test]
    public void Payload_RefusesOversizedAndMalformedBytes_AsInvalidArgument()
    {
        var valid = new RegisterRequest { Email = "alice@example.com", Password = AuthHarness.Password }.ToByteArray();
        Assert.That(AuthPayload.Parse(RegisterRequest.Parser, valid).Email, Is.EqualTo("alice@example.com"));

        AuthAssert.Throws(AuthErrorCode.InvalidArgument, () => AuthPayload.Parse(RegisterRequest.Parser, new byte[AuthPayload.MaxRequestBytes + 1]));
        // Every strict prefix of a MessagePack message is incomplete: its array header promises more.
        for (var length = 0; length < valid.Length; length++)
        {
            var truncated = valid.AsSpan(0, length).ToArray();
            AuthAssert.Throws(AuthErrorCode.InvalidArgument, () => AuthPayload.Parse(RegisterRequest.Parser, truncated));
        }

        // An array header claiming 2^32-1 members, a string claiming 4 GiB, a nil message, a byte MessagePack never uses.
        AuthAssert.Throws(AuthErrorCode.InvalidArgument, () => AuthPayload.Parse(LoginRequest.Parser, [0xDD, 0xFF, 0xFF, 0xFF, 0xFF]));
        AuthAssert.Throws(AuthErrorCode.InvalidArgument, () => AuthPayload.Parse(LoginRequest.Parser, [0x92, 0xDB, 0xFF, 0xFF, 0xFF, 0xFF, 0x61]));
        AuthAssert.Throws(AuthErrorCode.InvalidArgument, () => AuthPayload.Parse(ValidateRequest.Parser, [0xC0]));
        AuthAssert.Throws(AuthErrorCode.InvalidArgument, () => AuthPayload.Parse(ValidateRequest.Parser, [0xC1]));
    }

    [Test, CancelAfter(10000)]
    public async Task WrongMemberTypes_AreInvalidArgument_AndChangeNothing(CancellationToken ct)
    {
        // email (key 0) sent as an integer, password (key 1) as a float64.
        byte[] wrongTypes = [0x92, 0x2A, 0xCB, 1, 2, 3, 4, 5, 6, 7, 8];
        AuthAssert.Throws(AuthErrorCode.InvalidArgument, () => AuthPayload.Parse(RegisterRequest.Parser, wrongTypes));
        AuthAssert.Throws(AuthErrorCode.InvalidArgument, () => AuthPayload.Parse(ValidateRequest.Parser, wrongTypes));
        // Members left out arrive empty, and the service refuses them.
        var empty = AuthPayload.Parse(RegisterRequest.Parser, [0x90]);
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.RegisterAsync(empty, ct));
        var noCredential = AuthPayload.Parse(ValidateRequest.Parser, [0x92, 0xC0, 0xC0]);
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.ValidateAsync(noCredential, ct));
        Assert.That(await _auth.SnapshotAsync(ct), Is.Empty);
    }

    [Test, CancelAfter(20000)]
    public async Task RandomPayloads_OnEveryMethod_GetTypedErrors_ChangeNothing_AndTheServiceKeepsServing(CancellationToken ct)
    {
        var (email, _, token) = await _auth.RegisterAndLoginAsync(ct);
        var key = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "k" }, ct);
        var before = await _auth.SnapshotAsync(ct);
        var random = TestSeed.CreateRandom();

        for (var i = 0; i < 300; i++)
        {
            var bytes = RandomPayload(random);
            var method = i % 6;
            try
            {
                switch (method)
                {
                    case 0:
                        await _auth.Service.RegisterAsync(AuthPayload.Parse(RegisterRequest.Parser, bytes), ct);
                        break;
                    case 1:
                        await _auth.Service.LoginAsync(AuthPayload.Parse(LoginRequest.Parser, bytes), ct);
                        break;
                    case 2:
                        await _auth.Service.CreateApiKeyAsync(AuthPayload.Parse(CreateApiKeyRequest.Parser, bytes), ct);
                        break;
                    case 3:
                        await _auth.Service.ListApiKeysAsync(AuthPayload.Parse(ListApiKeysRequest.Parser, bytes), ct);
                        break;
                    case 4:
                        await _auth.Service.RevokeApiKeyAsync(AuthPayload.Parse(RevokeApiKeyRequest.Parser, bytes), ct);
                        break;
                    default:
                        await _auth.Service.ValidateAsync(AuthPayload.Parse(ValidateRequest.Parser, bytes), ct);
                        break;
                }

                Assert.Fail($"random payload {Convert.ToHexString(bytes)} was accepted by method {method}");
            }
            catch (AuthException e)
            {
                Assert.That(e.Code, Is.Not.EqualTo(AuthErrorCode.AlreadyExists).And.Not.EqualTo(AuthErrorCode.PermissionDenied));
            }
        }

        Assert.That(await _auth.SnapshotAsync(ct), Is.EqualTo(before));
        var login = await _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct);
        Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { Token = login.Token }, ct)).Email, Is.EqualTo(email));
        Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = key.ApiKey }, ct)).KeyId, Is.EqualTo(key.KeyId));
    }

    // Random bytes, or a well-formed message whose string members hold random text.
    private static byte[] RandomPayload(Random random)
    {
        if (random.Next(2) == 0)
        {
            var bytes = new byte[random.Next(0, 200)];
            random.NextBytes(bytes);
            return bytes;
        }

        var output = new System.Buffers.ArrayBufferWriter<byte>();
        var writer = new MessagePack.MessagePackWriter(output);
        var members = random.Next(0, 4);
        writer.WriteArrayHeader(members);
        for (var f = 0; f < members; f++)
        {
            var text = new char[random.Next(0, 300)];
            for (var j = 0; j < text.Length; j++)
            {
                text[j] = (char)random.Next(0x20, 0x7F);
            }

            writer.Write(new string(text));
        }

        writer.Flush();
        return output.WrittenSpan.ToArray();
    }
}
