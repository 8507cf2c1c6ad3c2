using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class AuthServiceRegisterTests
{
    private AuthHarness _auth = null!;

    [SetUp]
    public async Task SetUp() => _auth = await AuthHarness.CreateAsync();

    [TearDown]
    public async Task TearDown() => await _auth.DisposeAsync();

    [Test, CancelAfter(10000)]
    public async Task Register_CreatesAUser_WhoCanLogIn(CancellationToken ct)
    {
        var response = await _auth.Service.RegisterAsync(new RegisterRequest { Email = " Alice@Example.COM", Password = AuthHarness.Password }, ct);
        Assert.That(response.Email, Is.EqualTo("alice@example.com"));
        Assert.That(response.UserId, Does.StartWith("usr_"));

        var login = await _auth.Service.LoginAsync(new LoginRequest { Email = "alice@example.com", Password = AuthHarness.Password }, ct);
        Assert.That(login.UserId, Is.EqualTo(response.UserId));
    }

    [Test, CancelAfter(10000)]
    public async Task Register_NeverStoresThePassword(CancellationToken ct)
    {
        await _auth.Service.RegisterAsync(new RegisterRequest { Email = "alice@example.com", Password = AuthHarness.Password }, ct);
        var snapshot = await _auth.SnapshotAsync(ct);
        var passwordHex = Convert.ToHexString(System.Text.Encoding.UTF8.GetBytes(AuthHarness.Password));
        Assert.That(snapshot.Values, Has.None.Contains(passwordHex));
    }

    [TestCase("alice@example.com")]
    [TestCase("ALICE@EXAMPLE.COM")]
    [TestCase("  Alice@example.com  ")]
    [CancelAfter(10000)]
    public async Task Register_RefusesADuplicateEmail_InAnyLetterCase(string second, CancellationToken ct)
    {
        await _auth.Service.RegisterAsync(new RegisterRequest { Email = "alice@example.com", Password = AuthHarness.Password }, ct);
        var before = await _auth.SnapshotAsync(ct);

        var error = await AuthAssert.ThrowsAsync(AuthErrorCode.AlreadyExists, () =>
            _auth.Service.RegisterAsync(new RegisterRequest { Email = second, Password = "another pass 1234" }, ct));

        Assert.That(error.Message, Does.Contain("already exists"));
        Assert.That(await _auth.SnapshotAsync(ct), Is.EqualTo(before));
        Assert.DoesNotThrowAsync(() => _auth.Service.LoginAsync(new LoginRequest { Email = "alice@example.com", Password = AuthHarness.Password }, ct),
            "the first account keeps its password");
    }

    [Test, CancelAfter(10000)]
    public async Task Register_LetsExactlyOneOfConcurrentDuplicatesWin(CancellationToken ct)
    {
        for (var round = 0; round < 3; round++)
        {
            var email = _auth.NewEmail();
            var attempts = Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
            {
                try
                {
                    var response = await _auth.Service.RegisterAsync(new RegisterRequest { Email = i % 2 == 0 ? email : email.ToUpperInvariant(), Password = $"password number {i}" }, ct);
                    return (Winner: response.UserId, Password: $"password number {i}");
                }
                catch (AuthException e) when (e.Code == AuthErrorCode.AlreadyExists)
                {
                    return (Winner: (string?)null, Password: string.Empty);
                }
            }, ct)).ToList();
            var results = await Task.WhenAll(attempts);

            var winners = results.Where(r => r.Winner is not null).ToList();
            Assert.That(winners, Has.Count.EqualTo(1), $"round {round}");
            var login = await _auth.Service.LoginAsync(new LoginRequest { Email = email, Password = winners[0].Password }, ct);
            Assert.That(login.UserId, Is.EqualTo(winners[0].Winner));
            var validated = await _auth.Service.ValidateAsync(new ValidateRequest { Token = login.Token }, ct);
            Assert.That(validated.UserId, Is.EqualTo(winners[0].Winner));
        }

        // Losers leave no id index behind: one user-ids entry per account.
        var snapshot = await _auth.SnapshotAsync(ct);
        Assert.That(snapshot.Keys.Count(k => k.StartsWith("user-ids/", StringComparison.Ordinal)), Is.EqualTo(3));
        Assert.That(snapshot.Keys.Count(k => k.StartsWith("users/", StringComparison.Ordinal)), Is.EqualTo(3));
    }

    [TestCase("short1", "at least 12")]
    [TestCase("onlyletterslongenough", "letters and digits")]
    [TestCase("123456789012345", "letters and digits")]
    [TestCase("", "required")]
    [CancelAfter(10000)]
    public async Task Register_RefusesAWeakPassword(string password, string reason, CancellationToken ct)
    {
        var error = await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () =>
            _auth.Service.RegisterAsync(new RegisterRequest { Email = "alice@example.com", Password = password }, ct));
        Assert.That(error.Message, Does.Contain(reason));
        Assert.That(await _auth.SnapshotAsync(ct), Is.Empty);
    }

    [TestCase("")]
    [TestCase("not-an-email")]
    [TestCase("alice@localhost")]
    [TestCase("Alice <alice@example.com>")]
    [CancelAfter(10000)]
    public async Task Register_RefusesABadEmail(string email, CancellationToken ct)
    {
        var error = await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () =>
            _auth.Service.RegisterAsync(new RegisterRequest { Email = email, Password = AuthHarness.Password }, ct));
        Assert.That(error.Message, Does.Contain("email"));
        Assert.That(await _auth.SnapshotAsync(ct), Is.Empty);
    }

    [Test, CancelAfter(10000)]
    public async Task Register_RefusesHugeInputs_WithoutStoringAnything(CancellationToken ct)
    {
        var huge = new string('a', 4 << 20);
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () =>
            _auth.Service.RegisterAsync(new RegisterRequest { Email = huge + "@example.com", Password = AuthHarness.Password }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () =>
            _auth.Service.RegisterAsync(new RegisterRequest { Email = "alice@example.com", Password = huge + "1" }, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () =>
            _auth.Service.RegisterAsync(new RegisterRequest { Email = "alice@" + huge + ".com", Password = AuthHarness.Password }, ct));
        Assert.That(await _auth.SnapshotAsync(ct), Is.Empty);
    }

    [Test, CancelAfter(10000)]
    public async Task Register_RefusesAMissingRequest(CancellationToken ct)
    {
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.RegisterAsync(null!, ct));
        await AuthAssert.ThrowsAsync(AuthErrorCode.InvalidArgument, () => _auth.Service.RegisterAsync(new RegisterRequest(), ct));
        Assert.That(await _auth.SnapshotAsync(ct), Is.Empty);
    }
}
