using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Gateway;
using static P2PInference.Tests.Unit.Gateway.GatewayHarness;

namespace P2PInference.Tests.Unit.Gateway;

/// <summary>Who may infer: credentials validated by Auth and cached on the fake clock; per-key rate limits.</summary>
[CancelAfter(10_000)]
public sealed class GatewayAuthenticationTests
{
    private GatewayHarness _h = null!;

    [SetUp]
    public async Task StartAsync()
    {
        _h = await GatewayHarness.StartAsync(new GatewayOptions { CredentialCacheTtl = TimeSpan.FromSeconds(30), NegativeCredentialCacheTtl = TimeSpan.Zero });
        await _h.AddProcessorAsync();
    }

    [TearDown]
    public async Task StopAsync() => await _h.DisposeAsync();

    [Test]
    public async Task Infer_WithValidApiKey_ReturnsTheProcessorsAnswer()
    {
        var response = await _h.InferAsync(Prompt());

        Assert.That(response.Text, Is.EqualTo("Hello wide world!"));
        Assert.That(response.FinishReason, Is.EqualTo("stop"));
    }

    [Test]
    public async Task Infer_WithLoginToken_IsAccepted()
    {
        var token = _h.Auth.AddToken("user-2", _h.Time.GetUtcNow().AddHours(1));

        var response = await _h.InferAsync(Prompt(), "Bearer " + token);

        Assert.That(response.Text, Is.Not.Empty);
    }

    [Test]
    public async Task Infer_WithoutCredential_IsUnauthenticated_WithoutAskingAuth()
    {
        var error = await ErrorOf(() => _h.CallAsync(WorkerMethods.Gateway.Infer, Prompt(), Workers.Contracts.Inference.InferResponse.Parser));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(error.Message, Does.Contain("authorization"));
        Assert.That(_h.Auth.ValidateCalls, Is.Zero);
    }

    [TestCase("ApiKey")]
    [TestCase("ApiKey ")]
    [TestCase("Basic dXNlcjpwdw==")]
    [TestCase("pk_test_0001_secret")]
    [TestCase("ApiKey two words")]
    public async Task Infer_WithMalformedCredential_IsUnauthenticated_WithoutAskingAuth(string header)
    {
        var error = await ErrorOf(() => _h.InferAsync(Prompt(), header));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(_h.Auth.ValidateCalls, Is.Zero);
    }

    [Test]
    public async Task Infer_WithForgedKey_IsUnauthenticated_AndTheProcessorIsNotCalled()
    {
        var processor = await _h.AddProcessorAsync("m2");

        var error = await ErrorOf(() => _h.InferAsync(Prompt(model: "m2"), "ApiKey pk_forged_0000_secret"));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(processor.InferCalls, Is.Zero);
    }

    [Test]
    public async Task Infer_WithExpiredToken_IsUnauthenticated()
    {
        var error = await ErrorOf(() => _h.InferAsync(Prompt(), "Bearer eyJhbGciOiJFZERTQSJ9.eyJleHAiOjF9.c2ln"));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
    }

    [Test]
    public void Credential_IsValidatedOnce_WithinTheCacheTtl_AndAgainAfterIt() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { CredentialCacheTtl = TimeSpan.FromSeconds(30), NegativeCredentialCacheTtl = TimeSpan.Zero }, time: sim.Clock);
        await h.AddProcessorAsync();
        await h.InferAsync(Prompt());
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(29));
        await h.InferAsync(Prompt());
        Assert.That(h.Auth.ValidateCalls, Is.EqualTo(1));

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(1));
        await h.InferAsync(Prompt());

        Assert.That(h.Auth.ValidateCalls, Is.EqualTo(2));
    });

    [Test]
    public void RevokedKey_IsRefused_OnceTheCachedVerdictExpires() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { CredentialCacheTtl = TimeSpan.FromSeconds(30), NegativeCredentialCacheTtl = TimeSpan.Zero }, time: sim.Clock);
        await h.AddProcessorAsync();
        await h.InferAsync(Prompt());
        h.Auth.Revoke(h.ApiKey);

        await sim.Clock.AdvanceAsync(h.Options.CredentialCacheTtl);
        var error = await ErrorOf(() => h.InferAsync(Prompt()));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
    });

    [Test]
    public async Task RefusedCredential_IsNotCached_WhenTheNegativeTtlIsZero()
    {
        await ErrorOf(() => _h.InferAsync(Prompt(), "ApiKey pk_forged"));
        await ErrorOf(() => _h.InferAsync(Prompt(), "ApiKey pk_forged"));

        Assert.That(_h.Auth.ValidateCalls, Is.EqualTo(2));
    }

    [Test]
    public void RefusedCredential_IsCachedBriefly_WhenANegativeTtlIsSet() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { NegativeCredentialCacheTtl = TimeSpan.FromSeconds(2) }, time: sim.Clock);
        await ErrorOf(() => h.InferAsync(Prompt(), "ApiKey pk_forged"));
        var cached = await ErrorOf(() => h.InferAsync(Prompt(), "ApiKey pk_forged"));
        Assert.That(h.Auth.ValidateCalls, Is.EqualTo(1));
        Assert.That(cached.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(2));
        await ErrorOf(() => h.InferAsync(Prompt(), "ApiKey pk_forged"));

        Assert.That(h.Auth.ValidateCalls, Is.EqualTo(2));
    });

    [Test]
    public void RateLimit_Exceeded_IsResourceExhaustedWithRetryAfter_AndRecoversWhenTimeAdvances() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { CredentialCacheTtl = TimeSpan.FromSeconds(30), NegativeCredentialCacheTtl = TimeSpan.Zero }, time: sim.Clock);
        await h.AddProcessorAsync();
        var key = h.Auth.AddApiKey("user-9", new Quota { RequestsPerMinute = 60, Burst = 2 });
        await h.InferAsync(Prompt(), "ApiKey " + key);
        await h.InferAsync(Prompt(), "ApiKey " + key);

        var error = await ErrorOf(() => h.InferAsync(Prompt(), "ApiKey " + key));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(error.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(1)));
        Assert.That(await h.InferAsync(Prompt()), Is.Not.Null, "another user has their own bucket");
        await sim.Clock.AdvanceAsync(error.RetryAfter!.Value);
        Assert.That((await h.InferAsync(Prompt(), "ApiKey " + key)).Text, Is.Not.Empty);
    });

    [Test]
    public async Task RateLimit_IsTheUsers_AcrossAllTheirKeys_AndAnotherUserIsServed()
    {
        await using var h = await GatewayHarness.StartAsync();
        await h.AddProcessorAsync();
        var quota = new Quota { RequestsPerMinute = 60, Burst = 2 };
        var keys = Enumerable.Range(0, 3).Select(_ => "ApiKey " + h.Auth.AddApiKey("user-many-keys", quota)).ToArray();
        await h.InferAsync(Prompt(), keys[0]);
        await h.InferAsync(Prompt(), keys[1]);

        var error = await ErrorOf(() => h.InferAsync(Prompt(), keys[2]));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted), "a fresh key does not bring a fresh quota");
        Assert.That((await h.InferAsync(Prompt())).Text, Is.Not.Empty, "another user is served");
    }

    [Test]
    public async Task RateLimit_UsesTheGatewayDefault_WhenAuthGivesNoQuota()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { DefaultRateLimit = new(6, 1) });
        await h.AddProcessorAsync();
        await h.InferAsync(Prompt());

        var error = await ErrorOf(() => h.InferAsync(Prompt()));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(error.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(10)));
    }

    [Test]
    public async Task Cancel_WithoutCredential_IsUnauthenticated()
    {
        var error = await ErrorOf(() => _h.CallAsync(WorkerMethods.Gateway.Cancel, new Workers.Contracts.Inference.CancelRequest { RequestId = "r1" },
            Workers.Contracts.Inference.CancelResponse.Parser));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
    }

    [Test]
    public void Infer_FromAPeerPastItsBudgetOfRefusedCredentials_IsRateLimited_WithoutAskingAuth() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { RefusedCredentialLimit = new(6, 3), NegativeCredentialCacheTtl = TimeSpan.Zero },
            time: sim.Clock);
        await h.AddProcessorAsync();
        var codes = new List<RpcStatusCode>();
        for (var i = 0; i < 5; i++)
            codes.Add((await ErrorOf(() => h.InferAsync(Prompt(), $"ApiKey pk_guess_{i:D4}_secret"))).Code);
        var refused = await ErrorOf(() => h.InferAsync(Prompt(), "ApiKey pk_guess_9999_secret"));
        var other = h.Network.CreateNode();
        var fromOther = await other.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Infer, Prompt(), Workers.Contracts.Inference.InferResponse.Parser,
            As(h.KeyCredential), Token);

        Assert.Multiple(() =>
        {
            Assert.That(codes, Is.EqualTo(new[] { RpcStatusCode.Unauthenticated, RpcStatusCode.Unauthenticated, RpcStatusCode.Unauthenticated,
                RpcStatusCode.ResourceExhausted, RpcStatusCode.ResourceExhausted }), "a burst of 3 refusals, then the peer waits");
            Assert.That(refused.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(10)), "6 a minute: one more every 10 s");
            Assert.That(h.Auth.ValidateCalls, Is.EqualTo(4), "Auth saw the three guesses and the other peer's key, nothing past the budget");
            Assert.That(fromOther.Text, Is.Not.Empty, "another peer is served");
        });

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(10));
        var again = await ErrorOf(() => h.InferAsync(Prompt(), "ApiKey pk_guess_0005_secret"));
        Assert.That(again.Code, Is.EqualTo(RpcStatusCode.Unauthenticated), "the budget refills");
        Assert.That(h.Auth.ValidateCalls, Is.EqualTo(5));
    });

    [Test]
    public void Infer_FromManyPeersBehindOneAddress_SharesOneBudgetOfRefusedCredentials() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { RefusedCredentialLimit = new(6, 3), NegativeCredentialCacheTtl = TimeSpan.Zero },
            time: sim.Clock);
        await h.AddProcessorAsync();
        var codes = new List<RpcStatusCode>();
        for (var i = 0; i < 6; i++)
        {
            // A new PeerId for each guess, all from one machine.
            var peer = h.Network.CreateNode();
            peer.Address = Multiaddress.Parse($"/ip4/203.0.113.7/tcp/{40000 + i}");
            codes.Add((await ErrorOf(() => peer.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Infer, Prompt(),
                Workers.Contracts.Inference.InferResponse.Parser, As($"ApiKey pk_guess_{i:D4}_secret"), Token))).Code);
        }
        var neighbour = h.Network.CreateNode();
        neighbour.Address = Multiaddress.Parse("/ip4/203.0.113.8/tcp/40000");
        var fromNeighbour = await ErrorOf(() => neighbour.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Infer, Prompt(),
            Workers.Contracts.Inference.InferResponse.Parser, As("ApiKey pk_guess_7777_secret"), Token));

        Assert.Multiple(() =>
        {
            Assert.That(codes.Count(c => c == RpcStatusCode.ResourceExhausted), Is.EqualTo(3), "past the address's burst of 3, its peers wait");
            Assert.That(fromNeighbour.Code, Is.EqualTo(RpcStatusCode.Unauthenticated), "another address still reaches Auth");
            Assert.That(h.Auth.ValidateCalls, Is.EqualTo(4));
        });
    });
}
