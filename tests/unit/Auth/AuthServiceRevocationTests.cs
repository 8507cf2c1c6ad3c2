using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class AuthServiceRevocationTests
{
    private AuthHarness _auth = null!;

    [SetUp]
    public async Task SetUp() => _auth = await AuthHarness.CreateAsync();

    [TearDown]
    public async Task TearDown() => await _auth.DisposeAsync();

    [Test, CancelAfter(10000)]
    public async Task Logout_RefusesThatToken_ButNotAnotherOfTheSameUser(CancellationToken ct)
    {
        var (email, userId, laptop) = await _auth.RegisterAndLoginAsync(ct);
        var phone = await LoginAsync(email, ct);

        var response = await _auth.Service.LogoutAsync(new LogoutRequest { Token = laptop }, ct);

        Assert.That(response.UserId, Is.EqualTo(userId));
        var refused = await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated,
            () => _auth.Service.ValidateAsync(new ValidateRequest { Token = laptop }, ct));
        Assert.That(refused.Message, Does.Contain("revoked"));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated,
            () => _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = laptop }, ct));
        var other = await _auth.Service.ValidateAsync(new ValidateRequest { Token = phone }, ct);
        Assert.That(other.UserId, Is.EqualTo(userId));
    }

    [Test, CancelAfter(10000)]
    public async Task Logout_Twice_IsRefusedTheSecondTime(CancellationToken ct)
    {
        var (_, _, token) = await _auth.RegisterAndLoginAsync(ct);
        await _auth.Service.LogoutAsync(new LogoutRequest { Token = token }, ct);

        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.LogoutAsync(new LogoutRequest { Token = token }, ct));
    }

    [Test, CancelAfter(10000)]
    public async Task Logout_SurvivesARestart(CancellationToken ct)
    {
        var (_, _, token) = await _auth.RegisterAndLoginAsync(ct);
        await _auth.Service.LogoutAsync(new LogoutRequest { Token = token }, ct);

        await _auth.CrashAndRestartAsync(ct);

        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { Token = token }, ct));
    }

    [Test, CancelAfter(10000)]
    public async Task RevokeAll_RefusesEveryEarlierToken_WhileANewLoginWorks(CancellationToken ct)
    {
        var (email, userId, first) = await _auth.RegisterAndLoginAsync(ct);
        _auth.Time.Advance(TimeSpan.FromMinutes(5));
        var second = await LoginAsync(email, ct);
        // Same second as the revocation: whole-second iat must not let it through.
        _auth.Time.Advance(TimeSpan.FromMilliseconds(400));
        var sameSecond = await LoginAsync(email, ct);
        var (_, _, someoneElse) = await _auth.RegisterAndLoginAsync(ct);

        var response = await _auth.Service.RevokeAllTokensAsync(new RevokeAllTokensRequest { Token = second }, ct);

        Assert.That(response.UserId, Is.EqualTo(userId));
        Assert.That(response.RevokedBeforeUnixMs, Is.GreaterThan(_auth.Time.GetUtcNow().ToUnixTimeMilliseconds()));
        foreach (var token in new[] { first, second, sameSecond })
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { Token = token }, ct));
        Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { Token = someoneElse }, ct)).UserId, Is.Not.EqualTo(userId),
            "another user's token is untouched");

        // A login in the very same second gets a token that is accepted.
        var fresh = await LoginAsync(email, ct);
        Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { Token = fresh }, ct)).UserId, Is.EqualTo(userId));
        _auth.Time.Advance(TimeSpan.FromHours(1));
        Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { Token = fresh }, ct)).UserId, Is.EqualTo(userId));
    }

    [Test, CancelAfter(10000)]
    public async Task RevokeAll_LeavesApiKeysWorking(CancellationToken ct)
    {
        var (_, userId, token) = await _auth.RegisterAndLoginAsync(ct);
        var key = await _auth.Service.CreateApiKeyAsync(new CreateApiKeyRequest { Token = token, Name = "server" }, ct);

        await _auth.Service.RevokeAllTokensAsync(new RevokeAllTokensRequest { Token = token }, ct);

        Assert.That((await _auth.Service.ValidateAsync(new ValidateRequest { ApiKey = key.ApiKey }, ct)).UserId, Is.EqualTo(userId));
    }

    [Test, CancelAfter(10000)]
    public async Task RevokedTokenRecords_AreDropped_OnceTheirTokensHaveExpired(CancellationToken ct)
    {
        var (email, _, early) = await _auth.RegisterAndLoginAsync(ct);
        await _auth.Service.LogoutAsync(new LogoutRequest { Token = early }, ct);
        Assert.That(await RevocationRecordsAsync(ct), Is.EqualTo(1));

        // The first token has expired (lifetime plus clock skew) by the time the second is revoked.
        _auth.Time.Advance(_auth.Options.TokenLifetime + _auth.Options.ClockSkew + TimeSpan.FromSeconds(1));
        var later = await LoginAsync(email, ct);
        await _auth.Service.LogoutAsync(new LogoutRequest { Token = later }, ct);

        Assert.That(await RevocationRecordsAsync(ct), Is.EqualTo(1), "only the record still needed is kept");
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { Token = early }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { Token = later }, ct));
    }

    [Test, CancelAfter(10000)]
    public async Task Logouts_DoNotScanTheStore_BeyondOneLoadOfTheIndexAfterStart(CancellationToken ct)
    {
        // A store scan walks every record under the lock a waiting checkpoint blocks, so each scan can stall the store.
        var store = new ScanCountingStore(_auth.Store);
        var service = new AuthService(store, _auth.Key, _auth.Options, _auth.Time);
        var (email, _) = await _auth.RegisterAsync(ct);
        var tokens = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            var token = (await service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct)).Token;
            await service.LogoutAsync(new LogoutRequest { Token = token }, ct);
            tokens.Add(token);
        }

        Assert.That(store.Scans, Is.LessThanOrEqualTo(1), "at most one scan, to fill the index of revocations after start");
        foreach (var token in tokens)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => service.ValidateAsync(new ValidateRequest { Token = token }, ct));
        }
    }

    [Test, CancelAfter(10000)]
    public async Task Logout_WhoseCallerGoesAway_WhileTheIndexLoads_DoesNotFailAnotherWaitingLogout(CancellationToken ct)
    {
        // Every operation but the scan completes at once, so each logout runs up to the index load before the next line.
        var store = new GatedScanStore();
        var service = new AuthService(store, _auth.Key, _auth.Options, _auth.Time);
        var email = _auth.NewEmail();
        await service.RegisterAsync(new RegisterRequest { Email = email, Password = AuthHarness.Password }, ct);
        var first = (await service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct)).Token;
        var second = (await service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct)).Token;
        using var disconnect = CancellationTokenSource.CreateLinkedTokenSource(ct);

        var firstLogout = service.LogoutAsync(new LogoutRequest { Token = first }, disconnect.Token);
        var secondLogout = service.LogoutAsync(new LogoutRequest { Token = second }, ct);
        await disconnect.CancelAsync();
        await Assert.ThatAsync(() => firstLogout, Throws.InstanceOf<OperationCanceledException>());
        store.ReleaseScans();

        Assert.That((await secondLogout).ExpiresAtUnixMs, Is.GreaterThan(0), "the other logout does not share the first caller's cancellation");
        foreach (var token in new[] { first, second })
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => service.ValidateAsync(new ValidateRequest { Token = token }, ct));
        }
    }

    [Test, CancelAfter(10000)]
    public async Task RevokedTokenRecordsFromBeforeARestart_AreDropped_OnceTheirTokensHaveExpired(CancellationToken ct)
    {
        var (email, _, early) = await _auth.RegisterAndLoginAsync(ct);
        await _auth.Service.LogoutAsync(new LogoutRequest { Token = early }, ct);
        await _auth.CrashAndRestartAsync(ct);

        _auth.Time.Advance(_auth.Options.TokenLifetime + _auth.Options.ClockSkew + TimeSpan.FromSeconds(1));
        var later = await LoginAsync(email, ct);
        await _auth.Service.LogoutAsync(new LogoutRequest { Token = later }, ct);

        Assert.That(await RevocationRecordsAsync(ct), Is.EqualTo(1), "the restarted worker sweeps the record it did not write itself");
    }

    private async Task<string> LoginAsync(string email, CancellationToken ct) =>
        (await _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct)).Token;

    private async Task<int> RevocationRecordsAsync(CancellationToken ct) =>
        (await _auth.SnapshotAsync(ct)).Keys.Count(k => k.StartsWith("revoked-tokens/", StringComparison.Ordinal));
}
