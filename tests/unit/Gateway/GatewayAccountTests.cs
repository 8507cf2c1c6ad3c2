using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Gateway;
using static P2PInference.Tests.Unit.Gateway.GatewayHarness;

namespace P2PInference.Tests.Unit.Gateway;

/// <summary>register, login and the key methods: forwarded to Auth, Auth's answers and refusals passed back, Auth being down made plain.</summary>
[CancelAfter(10_000)]
public sealed class GatewayAccountTests
{
    private GatewayHarness _h = null!;

    [SetUp]
    public async Task StartAsync() => _h = await GatewayHarness.StartAsync();

    [TearDown]
    public async Task StopAsync() => await _h.DisposeAsync();

    [Test]
    public async Task Register_IsForwardedToAuth_AndAnswersWithAuthsResponse()
    {
        var response = await _h.CallAsync(WorkerMethods.Gateway.Register, new RegisterRequest { Email = "ada@example.com", Password = "correct horse" },
            RegisterResponse.Parser);

        Assert.That(response.UserId, Is.EqualTo("user-ada@example.com"));
        Assert.That(_h.Auth.Calls.Select(c => c.Method), Is.EqualTo(new[] { WorkerMethods.Auth.Register }));
    }

    [Test]
    public async Task Register_Twice_PassesAuthsAlreadyExistsThrough()
    {
        var request = new RegisterRequest { Email = "ada@example.com", Password = "correct horse" };
        await _h.CallAsync(WorkerMethods.Gateway.Register, request, RegisterResponse.Parser);

        var error = await ErrorOf(() => _h.CallAsync(WorkerMethods.Gateway.Register, request, RegisterResponse.Parser));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.AlreadyExists));
    }

    [Test]
    public async Task Login_IsForwardedToAuth_AndTheTokenThenCreatesAnApiKeyThroughBearerMetadata()
    {
        await _h.CallAsync(WorkerMethods.Gateway.Register, new RegisterRequest { Email = "ada@example.com", Password = "pw" }, RegisterResponse.Parser);
        var login = await _h.CallAsync(WorkerMethods.Gateway.Login, new LoginRequest { Email = "ada@example.com", Password = "pw" }, LoginResponse.Parser);

        var created = await _h.CallAsync(WorkerMethods.Gateway.CreateApiKey, new CreateApiKeyRequest { Name = "laptop" }, CreateApiKeyResponse.Parser,
            "Bearer " + login.Token);
        var listed = await _h.CallAsync(WorkerMethods.Gateway.ListApiKeys, new ListApiKeysRequest { Token = login.Token }, ListApiKeysResponse.Parser);

        Assert.That(login.Token, Is.Not.Empty);
        Assert.That(created.ApiKey, Is.Not.Empty);
        Assert.That(listed.Keys.Select(k => k.KeyId), Does.Contain(created.KeyId));
    }

    [Test]
    public async Task Login_WithWrongPassword_IsUnauthenticated()
    {
        var error = await ErrorOf(() => _h.CallAsync(WorkerMethods.Gateway.Login, new LoginRequest { Email = "nobody@example.com", Password = "x" },
            LoginResponse.Parser));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
    }

    [Test]
    public async Task CreateApiKey_WithoutAnyToken_IsUnauthenticated_WithoutAskingAuth()
    {
        var error = await ErrorOf(() => _h.CallAsync(WorkerMethods.Gateway.CreateApiKey, new CreateApiKeyRequest { Name = "x" }, CreateApiKeyResponse.Parser));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(error.Message, Does.Contain("token"));
        Assert.That(_h.Auth.Calls, Is.Empty);
    }

    [Test]
    public async Task AccountCall_PassesTheRequestIdAndTheRemainingDeadlineToAuth()
    {
        var options = new RpcCallOptions { Timeout = TimeSpan.FromSeconds(3), RequestId = "client-req-7" };
        var deadline = _h.Time.GetUtcNow() + TimeSpan.FromSeconds(3);

        await _h.CallAsync(WorkerMethods.Gateway.Register, new RegisterRequest { Email = "ada@example.com", Password = "pw" }, RegisterResponse.Parser,
            options: options);

        var (_, context) = _h.Auth.Calls.Single();
        Assert.That(context.RequestId, Is.EqualTo("client-req-7"));
        Assert.That(context.Deadline, Is.Not.Null.And.LessThanOrEqualTo(deadline));
    }

    [Test]
    public async Task MalformedAccountPayload_IsInvalidArgument_AndTheGatewayKeepsServing()
    {
        var error = await ErrorOf(() => _h.CallRawAsync(WorkerMethods.Gateway.Register, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]));
        var oversized = await ErrorOf(() => _h.CallRawAsync(WorkerMethods.Gateway.Login, new byte[_h.Options.MaxAccountRequestBytes + 1]));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(oversized.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(_h.Auth.Calls, Is.Empty);
        var ok = await _h.CallAsync(WorkerMethods.Gateway.Register, new RegisterRequest { Email = "ada@example.com", Password = "pw" }, RegisterResponse.Parser);
        Assert.That(ok.UserId, Is.Not.Empty);
    }

    [Test]
    public async Task AuthCrashed_AccountCallIsUnavailable_SayingAuthIsUnavailable()
    {
        _h.Network.Crash(_h.AuthNode.PeerId);

        var error = await ErrorOf(() => _h.CallAsync(WorkerMethods.Gateway.Login, new LoginRequest { Email = "a@example.com", Password = "pw" },
            LoginResponse.Parser));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.Message, Does.StartWith("auth unavailable"));
    }

    [Test]
    public async Task NoAuthAnywhere_InferIsUnavailable_SayingAuthIsUnavailable()
    {
        await using var h = await GatewayHarness.StartAsync(withAuth: false);
        await h.AddProcessorAsync();

        var error = await ErrorOf(() => h.InferAsync(Prompt(), "ApiKey pk_whatever"));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.Message, Does.StartWith("auth unavailable"));
    }

    [Test]
    public void AuthPartitioned_AccountCallIsUnavailable_AfterTheBackendTimeout() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(time: sim.Clock);
        h.Network.Partition(h.GatewayNode.PeerId, h.AuthNode.PeerId);

        var call = h.CallAsync(WorkerMethods.Gateway.Login, new LoginRequest { Email = "a@example.com", Password = "pw" }, LoginResponse.Parser);
        await sim.Clock.AdvanceAsync(h.Options.BackendTimeout);
        var error = await ErrorOf(() => call);

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.Message, Does.StartWith("auth unavailable"));
    });

    [Test]
    public async Task AccountCalls_FromOnePeer_AreRateLimited()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { DefaultRateLimit = new(60, 2) });
        var request = new LoginRequest { Email = "a@example.com", Password = "pw" };
        for (var i = 0; i < 2; i++)
            await ErrorOf(() => h.CallAsync(WorkerMethods.Gateway.Login, request, LoginResponse.Parser));

        var error = await ErrorOf(() => h.CallAsync(WorkerMethods.Gateway.Login, request, LoginResponse.Parser));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(error.RetryAfter, Is.Not.Null);
    }

    [Test]
    public async Task AccountCalls_FromAFloodingPeer_AreRefused_WhileAnotherPeerIsServed()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { DefaultRateLimit = new(60, 3) });
        var flooder = h.Network.CreateNode();
        var request = new LoginRequest { Email = "a@example.com", Password = "pw" };
        var refused = 0;
        for (var i = 0; i < 50; i++)
        {
            try
            {
                await flooder.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Login, request, LoginResponse.Parser);
            }
            catch (RpcException e) when (e.Code == RpcStatusCode.ResourceExhausted)
            {
                refused++;
            }
            catch (RpcException)
            {
            }
        }

        Assert.That(refused, Is.EqualTo(47));
        Assert.That(h.Auth.Calls.Count(c => c.Method == WorkerMethods.Auth.Login), Is.EqualTo(3), "the refused calls never reached Auth");
        var healthy = await h.CallAsync(WorkerMethods.Gateway.Register, new RegisterRequest { Email = "bo@example.com", Password = "correct horse" }, RegisterResponse.Parser);
        Assert.That(healthy.Email, Is.EqualTo("bo@example.com"));
    }

    [Test]
    public void AccountCalls_FromManyPeers_AreBoundedTogether_AndServedAgainAsTheBucketRefills() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { DefaultRateLimit = new(60, 3), AccountRateLimit = new(60, 5) }, time: sim.Clock);
        var request = new LoginRequest { Email = "a@example.com", Password = "pw" };
        var codes = new List<RpcStatusCode>();
        for (var i = 0; i < 8; i++)
        {
            // A new PeerId each time: the per-peer bucket never stops them.
            var peer = h.Network.CreateNode();
            codes.Add((await ErrorOf(() => peer.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Login, request, LoginResponse.Parser))).Code);
        }

        Assert.That(codes.Count(c => c == RpcStatusCode.ResourceExhausted), Is.EqualTo(3), "past the shared burst of 5, account calls wait");
        Assert.That(h.Auth.Calls.Count(c => c.Method == WorkerMethods.Auth.Login), Is.EqualTo(5));
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(1));
        var healthy = await h.CallAsync(WorkerMethods.Gateway.Register, new RegisterRequest { Email = "bo@example.com", Password = "correct horse" }, RegisterResponse.Parser);
        Assert.That(healthy.Email, Is.EqualTo("bo@example.com"));
    });

    [Test]
    public void AccountCalls_FromManyPeersBehindOneAddress_AreBoundedPerAddress_WhileOtherAddressesAreServed() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(
            new GatewayOptions { DefaultRateLimit = new(60, 3), AccountRateLimitPerAddress = new(60, 4), AccountRateLimit = new(600, 100) }, time: sim.Clock);
        var request = new LoginRequest { Email = "a@example.com", Password = "pw" };
        var codes = new List<RpcStatusCode>();
        for (var i = 0; i < 10; i++)
        {
            // A new PeerId each time, all from one machine.
            var peer = h.Network.CreateNode();
            peer.Address = Multiaddress.Parse($"/ip4/203.0.113.7/tcp/{40000 + i}");
            codes.Add((await ErrorOf(() => peer.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Login, request, LoginResponse.Parser))).Code);
        }
        var neighbour = h.Network.CreateNode();
        neighbour.Address = Multiaddress.Parse("/ip4/203.0.113.8/tcp/40000");
        var local = h.Network.CreateNode();
        local.Address = Multiaddress.Parse("/ip4/127.0.0.1/tcp/40000");

        var fromNeighbour = await ErrorOf(() => neighbour.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Login, request, LoginResponse.Parser));
        var fromLoopback = await ErrorOf(() => local.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Login, request, LoginResponse.Parser));

        Assert.Multiple(() =>
        {
            Assert.That(codes.Count(c => c == RpcStatusCode.ResourceExhausted), Is.EqualTo(6), "past the address's burst of 4, its peers wait");
            Assert.That(fromNeighbour.Code, Is.Not.EqualTo(RpcStatusCode.ResourceExhausted), "another address is served");
            Assert.That(fromLoopback.Code, Is.Not.EqualTo(RpcStatusCode.ResourceExhausted), "loopback is the operator's own");
            Assert.That(h.Auth.Calls.Count(c => c.Method == WorkerMethods.Auth.Login), Is.EqualTo(6), "the refused calls never reached Auth");
        });
    });
}
