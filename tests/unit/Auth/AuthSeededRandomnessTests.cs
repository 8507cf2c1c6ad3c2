using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Store;
using Microsoft.Extensions.Time.Testing;
using P2PInference.TestKit.Simulation;
using P2PInference.TestKit.Store;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Auth;

// Plain async, not SimulationTest.Run: nothing here waits on time (the clock stands still, so two runs
// issue tokens at the same instant). The in-memory store: what is drawn from the random source does not
// depend on the store engine, and the first real store in a process takes seconds to start.
/// <summary>
/// With a seeded source an Auth service replays a user's journey exactly — ids, salts, token ids,
/// API keys, every stored byte; with the system source (the default) secrets and ids are fresh each time.
/// </summary>
[TestFixture]
[CancelAfter(30_000)]
public sealed class AuthSeededRandomnessTests
{
    private const string Password = "correct horse 42 battery";

    private sealed record Journey(string UserId, string Token, string KeyId, string ApiKey, string Stored);

    private static readonly DateTimeOffset Start = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    /// <summary>Register, a failed login for an unknown email (the decoy hash), login, create a key; each run on a fresh store and clock.</summary>
    private static async Task<Journey> RunJourneyAsync(IRandomSource? source, CancellationToken ct)
    {
        var clock = new FakeTimeProvider(Start);
        await using var store = new SimulatedStore();
        var signingKey = KeyPair.FromSeed(new byte[32]);
        var options = new AuthOptions { PasswordIterations = AuthOptions.MinPasswordIterations };
        var auth = new AuthService(store, signingKey, options, clock, source);

        var registered = await auth.RegisterAsync(new RegisterRequest { Email = "ann@example.com", Password = Password }, ct);
        try
        {
            await auth.LoginAsync(new LoginRequest { Email = "nobody@example.com", Password = Password }, ct);
            Assert.Fail("an unknown email logged in");
        }
        catch (AuthException)
        {
            // Expected: the refusal went through the decoy hash, which draws a random password once.
        }
        var login = await auth.LoginAsync(new LoginRequest { Email = "ann@example.com", Password = Password }, ct);
        var key = await auth.CreateApiKeyAsync(new CreateApiKeyRequest { Token = login.Token, Name = "laptop" }, ct);

        var stored = new List<string>();
        await foreach (var entry in ((IKeyValueStore)store).ScanAsync(string.Empty, ct))
            stored.Add(entry.Key + "=" + Convert.ToHexString(entry.Value));
        return new Journey(registered.UserId, login.Token, key.KeyId, key.ApiKey, string.Join('\n', stored));
    }

    [Test]
    public async Task SameSeed_ReplaysIdsTokensKeysAndStoredBytes(CancellationToken ct)
    {
        var first = await RunJourneyAsync(new SeededRandomSource(new Random(9)), ct);
        var second = await RunJourneyAsync(new SeededRandomSource(new Random(9)), ct);

        Assert.That(second, Is.EqualTo(first));
        Assert.That(first.Stored, Does.Contain(first.UserId), "the stored bytes include the user record, salt and all");
    }

    [Test]
    public async Task DefaultSource_GivesFreshIdsAndSecretsEachRun(CancellationToken ct)
    {
        var first = await RunJourneyAsync(null, ct);
        var second = await RunJourneyAsync(null, ct);

        Assert.Multiple(() =>
        {
            Assert.That(second.UserId, Is.Not.EqualTo(first.UserId));
            Assert.That(second.Token, Is.Not.EqualTo(first.Token), "the token id differs although the clock and key are the same");
            Assert.That(second.KeyId, Is.Not.EqualTo(first.KeyId));
            Assert.That(second.ApiKey, Is.Not.EqualTo(first.ApiKey));
        });
    }

    [Test]
    public async Task ApiKeyService_WithTheSameSeed_IssuesTheSameKeys(CancellationToken ct)
    {
        var clock = new FakeTimeProvider(Start);
        await using var firstStore = new SimulatedStore();
        await using var secondStore = new SimulatedStore();
        await using var thirdStore = new SimulatedStore();
        var first = new ApiKeyService(firstStore, clock, randomSource: new SeededRandomSource(new Random(3)));
        var second = new ApiKeyService(secondStore, clock, randomSource: new SeededRandomSource(new Random(3)));
        var unseeded = new ApiKeyService(thirdStore, clock);

        for (var i = 0; i < 3; i++)
        {
            var (firstRecord, firstKey) = await first.CreateAsync("usr_1", "key " + i, ct);
            var (secondRecord, secondKey) = await second.CreateAsync("usr_1", "key " + i, ct);
            var (unseededRecord, unseededKey) = await unseeded.CreateAsync("usr_1", "key " + i, ct);

            Assert.That(secondKey, Is.EqualTo(firstKey));
            Assert.That(secondRecord.KeyId, Is.EqualTo(firstRecord.KeyId));
            Assert.That(unseededKey, Is.Not.EqualTo(firstKey));
            Assert.That(await second.FindActiveAsync(secondKey, ct), Is.Not.Null, "a seeded key still validates");
        }
    }

    [Test]
    public void PasswordHasher_WithTheSameSeed_UsesTheSameSalt()
    {
        var first = new PasswordHasher(AuthOptions.MinPasswordIterations, new SeededRandomSource(new Random(4))).Hash(Password);
        var second = new PasswordHasher(AuthOptions.MinPasswordIterations, new SeededRandomSource(new Random(4))).Hash(Password);
        var unseeded = new PasswordHasher(AuthOptions.MinPasswordIterations).Hash(Password);

        Assert.That(second, Is.EqualTo(first));
        Assert.That(unseeded, Is.Not.EqualTo(first));
        Assert.That(PasswordHasher.Verify(Password, first), Is.True);
    }
}
