using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class AuthServiceLoginTests
{
    private AuthHarness _auth = null!;

    [SetUp]
    public async Task SetUp() => _auth = await AuthHarness.CreateAsync();

    [TearDown]
    public async Task TearDown() => await _auth.DisposeAsync();

    [Test, CancelAfter(10000)]
    public async Task Login_ReturnsATokenThatValidates_For24Hours(CancellationToken ct)
    {
        var (email, userId) = await _auth.RegisterAsync(ct);
        var login = await _auth.Service.LoginAsync(new LoginRequest { Email = email.ToUpperInvariant(), Password = AuthHarness.Password }, ct);

        Assert.That(login.ExpiresAtUnixMs, Is.EqualTo((_auth.Time.GetUtcNow() + TimeSpan.FromHours(24)).ToUnixTimeMilliseconds()));
        var validated = await _auth.Service.ValidateAsync(new ValidateRequest { Token = login.Token }, ct);
        Assert.Multiple(() =>
        {
            Assert.That(validated.UserId, Is.EqualTo(userId));
            Assert.That(validated.Email, Is.EqualTo(email));
            Assert.That(validated.ExpiresAtUnixMs, Is.EqualTo(login.ExpiresAtUnixMs));
            Assert.That(validated.Quota!.RequestsPerMinute, Is.EqualTo(_auth.Options.DefaultQuota.RequestsPerMinute));
            Assert.That(validated.Quota!.Burst, Is.EqualTo(_auth.Options.DefaultQuota.Burst));
        });
        Assert.That(_auth.Service.TokenValidator.Validate(login.Token).Subject, Is.EqualTo(userId), "standalone validation agrees");
    }

    [Test, CancelAfter(10000)]
    public async Task Login_TokenExpires_AfterTheConfiguredLifetime(CancellationToken ct)
    {
        await using var auth = await AuthHarness.CreateAsync(o => o.TokenLifetime = TimeSpan.FromHours(1));
        var (_, _, token) = await auth.RegisterAndLoginAsync(ct);
        auth.Time.Advance(TimeSpan.FromMinutes(59));
        Assert.DoesNotThrowAsync(() => auth.Service.ValidateAsync(new ValidateRequest { Token = token }, ct));
        auth.Time.Advance(TimeSpan.FromMinutes(2));
        var error = await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => auth.Service.ValidateAsync(new ValidateRequest { Token = token }, ct));
        Assert.That(error.Message, Does.Contain("expired"));
    }

    [Test, CancelAfter(10000)]
    public async Task Token_IsValidAt2359_AndInvalidAt2401(CancellationToken ct)
    {
        var (_, _, token) = await _auth.RegisterAndLoginAsync(ct);
        _auth.Time.Advance(new TimeSpan(23, 59, 0));
        Assert.DoesNotThrowAsync(() => _auth.Service.ValidateAsync(new ValidateRequest { Token = token }, ct));
        Assert.DoesNotThrowAsync(() => _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = token }, ct));
        _auth.Time.Advance(TimeSpan.FromMinutes(2));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ValidateAsync(new ValidateRequest { Token = token }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.ListApiKeysAsync(new ListApiKeysRequest { Token = token }, ct));
    }

    [Test, CancelAfter(10000)]
    public async Task Login_WrongPasswordAndUnknownEmail_GetTheSameAnswer(CancellationToken ct)
    {
        var (email, _) = await _auth.RegisterAsync(ct);
        var before = await _auth.SnapshotAsync(ct);

        var wrongPassword = await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () =>
            _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = "wrong password 1" }, ct));
        var unknownEmail = await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () =>
            _auth.Service.LoginAsync(new LoginRequest { Email = "nobody@example.com", Password = AuthHarness.Password }, ct));

        Assert.That(wrongPassword.Message, Is.EqualTo(unknownEmail.Message));
        Assert.That(wrongPassword.Message, Is.EqualTo("invalid email or password"));
        Assert.That(await _auth.SnapshotAsync(ct), Is.EqualTo(before));
    }

    [Test, CancelAfter(10000)]
    public async Task Login_IsThrottled_AfterFiveFailures_AndRecovers_WhenTheWindowPasses(CancellationToken ct)
    {
        var (email, _) = await _auth.RegisterAsync(ct);
        var wrong = new LoginRequest { Email = email, Password = "wrong password 1" };
        for (var i = 0; i < 5; i++)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.LoginAsync(wrong, ct));
            _auth.Time.Advance(TimeSpan.FromMinutes(1));
        }

        // Even the right password is refused while throttled, and the caller learns when to retry.
        var throttled = await AuthAssert.ThrowsAsync(AuthErrorCode.ResourceExhausted, () =>
            _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct));
        Assert.That(throttled.RetryAfter, Is.EqualTo(TimeSpan.FromMinutes(10)), "the first failure was 5 minutes ago; the window is 15");

        _auth.Time.Advance(TimeSpan.FromMinutes(10) - TimeSpan.FromSeconds(1));
        await AuthAssert.ThrowsAsync(AuthErrorCode.ResourceExhausted, () => _auth.Service.LoginAsync(wrong, ct));

        _auth.Time.Advance(TimeSpan.FromSeconds(1));
        var login = await _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct);
        Assert.That(login.Token, Is.Not.Empty);
    }

    [Test, CancelAfter(10000)]
    public async Task Login_Throttle_IsPerEmail_AndClearedBySuccess(CancellationToken ct)
    {
        var (alice, _) = await _auth.RegisterAsync(ct);
        var (bob, _) = await _auth.RegisterAsync(ct);
        for (var i = 0; i < 4; i++)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.LoginAsync(new LoginRequest { Email = alice, Password = "wrong password 1" }, ct));
        }

        await _auth.Service.LoginAsync(new LoginRequest { Email = alice, Password = AuthHarness.Password }, ct);
        for (var i = 0; i < 4; i++)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.LoginAsync(new LoginRequest { Email = alice.ToUpperInvariant(), Password = "wrong password 1" }, ct));
        }

        Assert.DoesNotThrowAsync(() => _auth.Service.LoginAsync(new LoginRequest { Email = alice, Password = AuthHarness.Password }, ct), "success cleared the earlier four");
        for (var i = 0; i < 5; i++)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.LoginAsync(new LoginRequest { Email = alice, Password = "wrong password 1" }, ct));
        }

        await AuthAssert.ThrowsAsync(AuthErrorCode.ResourceExhausted, () => _auth.Service.LoginAsync(new LoginRequest { Email = alice, Password = AuthHarness.Password }, ct));
        Assert.DoesNotThrowAsync(() => _auth.Service.LoginAsync(new LoginRequest { Email = bob, Password = AuthHarness.Password }, ct), "another email is not affected");
    }

    [Test, CancelAfter(10000)]
    public async Task Login_ThrottlesUnknownEmails_Too(CancellationToken ct)
    {
        var unknown = new LoginRequest { Email = "nobody@example.com", Password = "wrong password 1" };
        for (var i = 0; i < 5; i++)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () => _auth.Service.LoginAsync(unknown, ct));
        }

        await AuthAssert.ThrowsAsync(AuthErrorCode.ResourceExhausted, () => _auth.Service.LoginAsync(unknown, ct));
    }

    [Test, CancelAfter(10000)]
    public async Task Login_ConcurrentGuesses_CannotExceedTheLimit(CancellationToken ct)
    {
        var (email, _) = await _auth.RegisterAsync(ct);
        var guesses = Enumerable.Range(0, 20).Select(i => Task.Run(async () =>
        {
            try
            {
                await _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = $"wrong password {i}" }, ct);
                return AuthErrorCode.InvalidArgument;
            }
            catch (AuthException e)
            {
                return e.Code;
            }
        }, ct));
        var codes = await Task.WhenAll(guesses);
        Assert.That(codes.Count(c => c == AuthErrorCode.Unauthenticated), Is.EqualTo(5));
        Assert.That(codes.Count(c => c == AuthErrorCode.ResourceExhausted), Is.EqualTo(15));
    }

    [Test, CancelAfter(10000)]
    public async Task Login_ThrottleMemory_StaysBounded(CancellationToken ct)
    {
        await using var auth = await AuthHarness.CreateAsync(o => o.LoginThrottle.MaxTrackedEmails = 20);
        for (var i = 0; i < 100; i++)
        {
            await AuthAssert.ThrowsAsync(AuthErrorCode.Unauthenticated, () =>
                auth.Service.LoginAsync(new LoginRequest { Email = $"spray{i}@example.com", Password = "wrong password 1" }, ct));
        }

        Assert.That(auth.Service.Throttle.TrackedEmails, Is.LessThanOrEqualTo(20));
    }

    [Test, CancelAfter(10000)]
    public async Task Login_RehashesThePassword_WhenTheIterationCountChanged(CancellationToken ct)
    {
        var (email, _) = await _auth.RegisterAsync(ct);
        var stronger = AuthHarness.TestOptions(o => o.PasswordIterations = 2000);
        var upgraded = new AuthService(_auth.Store, _auth.Key, stronger, _auth.Time);

        await upgraded.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct);

        var record = await P2PInference.Facilities.Store.KeyValueStoreMessageExtensions.GetMessageAsync(_auth.Store.SubStore("users"), email, UserRecord.Parser, ct);
        Assert.That(record!.PasswordHash, Does.StartWith("pbkdf2-sha256$2000$"));
        Assert.DoesNotThrowAsync(() => _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct), "old settings still verify the new hash");
    }

    [Test, CancelAfter(10000)]
    public async Task Login_RefusesMalformedRequests_AsInvalidArgument(CancellationToken ct)
    {
        var (email, _) = await _auth.RegisterAsync(ct);
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.LoginAsync(null!, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.LoginAsync(new LoginRequest(), ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.LoginAsync(new LoginRequest { Email = email }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = new string('x', 1 << 20) }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.LoginAsync(new LoginRequest { Email = new string('x', 1 << 20), Password = AuthHarness.Password }, ct));

        // None of those counted as login failures.
        Assert.DoesNotThrowAsync(() => _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = AuthHarness.Password }, ct));
        Assert.That(_auth.Service.Throttle.TrackedEmails, Is.Zero);
    }
}
