using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class AuthServiceDurabilityTests
{
    private AuthHarness _auth = null!;

    [SetUp]
    public async Task SetUp() => _auth = await AuthHarness.CreateAsync();

    [TearDown]
    public async Task TearDown() => await _auth.DisposeAsync();

    [Test, CancelAfter(20000)]
    public async Task UsersAndKeys_SurviveACrash(CancellationToken ct)
    {
        var (email, userId, token) = await _auth.RegisterAndLoginAsync(ct);
        var kept = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "kept" }, ct);
        _auth.Time.Advance(TimeSpan.FromSeconds(1));
        var revoked = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "revoked" }, ct);
        await _auth.Service.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = revoked.KeyId }, ct);

        await _auth.CrashAndRestartAsync(ct);

        var login = await _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct);
        Assert.That(login.UserId, Is.EqualTo(userId));
        Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { Token = token }, ct)).UserId, Is.EqualTo(userId), "tokens issued before the crash still validate");
        Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = kept.ApiKey }, ct)).UserId, Is.EqualTo(userId));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = revoked.ApiKey }, ct));
        var list = await _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = login.Token }, ct);
        Assert.That(list.Keys.Select(k => (k.Name, k.Revoked)), Is.EqualTo(new[] { ("kept", false), ("revoked", true) }));
        await AuthAssert.ThrowsAsync(AuthErrorCode.AlreadyExists, () =>
            _auth.Service.RegisterAsync(new RegisterRequest { Email = email, Password = AuthHarness.Password }, ct));
    }

    [Test, CancelAfter(20000)]
    public async Task ManyUsers_SurviveRepeatedCrashes(CancellationToken ct)
    {
        var users = new List<(string Email, string ApiKey)>();
        for (var round = 0; round < 3; round++)
        {
            for (var i = 0; i < 5; i++)
            {
                var (email, _, token) = await _auth.RegisterAndLoginAsync(ct);
                var key = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "k" }, ct);
                users.Add((email, key.ApiKey));
            }

            await _auth.CrashAndRestartAsync(ct);
        }

        foreach (var (email, apiKey) in users)
        {
            Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = apiKey }, ct)).Email, Is.EqualTo(email));
        }
    }
}
