using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Store;
using P2PInference.TestKit;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Integration.Auth;

/// <summary>
/// The Auth service on the on-disk store, as the worker runs it: accounts and keys outlive a kill
/// of the process and a clean restart, and a new process with the same signing key accepts the
/// tokens the old one issued.
/// </summary>
[TestFixture]
public sealed class AuthDiskStoreTests
{
    private const string Password = "correct horse 42 battery";

    private string _directory = null!;
    private FakeTimeProvider _time = null!;
    private KeyPair _key = null!;
    private AuthOptions _options = null!;

    [SetUp]
    public void SetUp()
    {
        _directory = Path.Combine(Path.GetTempPath(), "p2pinference-auth-" + Guid.NewGuid().ToString("N"));
        _time = new FakeTimeProvider();
        _key = KeyPair.FromRandom(TestSeed.CreateRandom());
        _options = new AuthOptions { PasswordIterations = AuthOptions.MinPasswordIterations };
    }

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Test, CancelAfter(30000)]
    public async Task Accounts_AndKeys_SurviveAKill_AndACleanRestart(CancellationToken ct)
    {
        string token, userId, keptKey, revokedKey;
        var store = await OpenAsync(ct);
        {
            var auth = new AuthService(store.SubStore("auth"), _key, _options, _time);
            userId = (await auth.RegisterAsync(new RegisterRequest { Email = "Alice@Example.com", Password = Password }, ct)).UserId;
            token = (await auth.LoginAsync(new LoginRequest { Email = "alice@example.com", Password = Password }, ct)).Token;
            keptKey = (await auth.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "kept" }, ct)).ApiKey;
            _time.Advance(TimeSpan.FromSeconds(1));
            var revoked = await auth.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "revoked" }, ct);
            revokedKey = revoked.ApiKey;
            await auth.RevokeApiKeyAsync(new RevokeApiKeyRequest { Token = token, KeyId = revoked.KeyId }, ct);
        }

        await store.SimulateCrashAsync();
        await using (var afterKill = await OpenAsync(ct))
        {
            await AssertStateAsync(new AuthService(afterKill.SubStore("auth"), _key, _options, _time), userId, token, keptKey, revokedKey, ct);
        }

        await using (var afterRestart = await OpenAsync(ct))
        {
            await AssertStateAsync(new AuthService(afterRestart.SubStore("auth"), _key, _options, _time), userId, token, keptKey, revokedKey, ct);
        }
    }

    [Test, CancelAfter(30000)]
    public async Task DefaultIterations_HashAndVerify_OnTheRealPath(CancellationToken ct)
    {
        // The production setting, once: a login with OWASP's 600 000 iterations works end to end.
        await using var store = await OpenAsync(ct);
        var auth = new AuthService(store.SubStore("auth"), _key, new AuthOptions(), _time);
        await auth.RegisterAsync(new RegisterRequest { Email = "bob@example.com", Password = Password }, ct);
        var login = await auth.LoginAsync(new LoginRequest { Email = "bob@example.com", Password = Password }, ct);
        Assert.That((await auth.ValidateAsync(new ValidateRequest { Token = login.Token }, ct)).Email, Is.EqualTo("bob@example.com"));
        var raw = await store.SubStore("auth").SubStore("users").GetMessageAsync("bob@example.com", UserRecord.Parser, ct);
        Assert.That(raw!.PasswordHash, Does.StartWith("pbkdf2-sha256$600000$"));
    }

    private static async Task AssertStateAsync(AuthService auth, string userId, string token, string keptKey, string revokedKey, CancellationToken ct)
    {
        Assert.That((await auth.ValidateAsync(new ValidateRequest { Token = token }, ct)).UserId, Is.EqualTo(userId));
        Assert.That((await auth.ValidateAsync(new ValidateRequest { ApiKey = keptKey }, ct)).UserId, Is.EqualTo(userId));
        var refused = Assert.ThrowsAsync<AuthException>(() => auth.ValidateAsync(new ValidateRequest { ApiKey = revokedKey }, ct));
        Assert.That(refused!.Code, Is.EqualTo(AuthErrorCode.Unauthenticated));
        var login = await auth.LoginAsync(new LoginRequest { Email = "ALICE@example.com", Password = Password }, ct);
        Assert.That(login.UserId, Is.EqualTo(userId));
        var duplicate = Assert.ThrowsAsync<AuthException>(() => auth.RegisterAsync(new RegisterRequest { Email = "alice@example.com", Password = Password }, ct));
        Assert.That(duplicate!.Code, Is.EqualTo(AuthErrorCode.AlreadyExists));
        var keys = await auth.ListApiKeysAsync(new ListApiKeysRequest { Token = login.Token }, ct);
        Assert.That(keys.Keys.Select(k => (k.Name, k.Revoked)), Is.EqualTo(new[] { ("kept", false), ("revoked", true) }));
    }

    private Task<FasterKeyValueStore> OpenAsync(CancellationToken ct) =>
        FasterKeyValueStore.OpenAsync(new FasterStoreOptions { DataDirectory = _directory, ExpectedKeyCount = 1L << 16, CheckpointInterval = TimeSpan.Zero }, ct);
}
