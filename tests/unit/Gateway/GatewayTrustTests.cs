using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;
using static P2PInference.Tests.Unit.Gateway.GatewayHarness;

namespace P2PInference.Tests.Unit.Gateway;

/// <summary>
/// The gateway with the trust layer on the twin: its calls go through a <see cref="TrustedRpcClient"/>,
/// so a processor whose grant is no longer valid is never sent the request, and the request goes to
/// another processor instead of back to the client.
/// </summary>
public sealed class GatewayTrustTests
{
    private static ulong s_serial;

    private static GatewayOptions Options() => new() { DefaultRateLimit = new(10_000, 1_000), MaxPromptLength = 1000 };

    /// <summary>The operator's key of a simulated cluster, and grants of it valid from a day ago for a year.</summary>
    private sealed class Cluster(SimulationExecutor sim)
    {
        public ClusterKey Key { get; } = new(KeyPair.FromRandom(sim.CreateRandom("cluster", "key")));

        public GrantVerifier Verifier() => new(Key.Id, sim.Clock);

        public RoleGrant Grant(PeerId peer, GrantRole role)
        {
            var now = sim.Clock.GetUtcNow();
            return Key.Issue(peer, role, now.AddDays(-1), now.AddYears(1), Interlocked.Increment(ref s_serial));
        }
    }

    [Test]
    public void AProcessorWhoseGrantIsNoLongerValid_IsNotSentTheRequest_AnotherServesIt() => SimulationTest.Run(async sim =>
    {
        var cluster = new Cluster(sim);
        var gatewayVerifier = cluster.Verifier();
        var h = await GatewayHarness.StartAsync(Options(), time: sim.Clock,
            clientOf: node => new TrustedRpcClient(node, gatewayVerifier, WorkerTrust.RoleOfMethod, ownGrant: null));
        await using var _ = h;
        GrantExchange.Serve(h.AuthNode, cluster.Grant(h.AuthNode.PeerId, GrantRole.Auth));
        var first = await h.AddProcessorAsync();
        var second = await h.AddProcessorAsync();
        second.ReportedLoad = 3;
        var firstGrant = cluster.Grant(first.PeerId, GrantRole.Processor);
        GrantExchange.Serve(first.Node, firstGrant);
        GrantExchange.Serve(second.Node, cluster.Grant(second.PeerId, GrantRole.Processor));
        Assert.That((await h.InferAsync(Prompt("warm up"))).Processor, Is.EqualTo(first.PeerId.ToString()), "the unloaded processor is picked");

        // The operator revokes the first processor's grant while the gateway still has it cached as the less loaded.
        gatewayVerifier.Revocations = new RevocationList([firstGrant.Serial], []);
        var response = await h.InferAsync(Prompt("tell me"));

        Assert.That(response.Processor, Is.EqualTo(second.PeerId.ToString()));
        Assert.That(response.Text, Is.EqualTo(string.Concat(FakeProcessor.DefaultWords)));
        Assert.That(first.InferCalls, Is.EqualTo(1), "nothing of the request went to the processor without a valid grant");
        Assert.That(second.InferCalls, Is.EqualTo(1));
    });

    [Test]
    public void ACallToOnePeerWithoutAValidGrant_IsUnavailable_AndMarkedNotDelivered() => SimulationTest.Run(async sim =>
    {
        var cluster = new Cluster(sim);
        var network = new P2PInference.TestKit.Rpc.InMemoryRpcNetwork(sim.Clock);
        await using var callee = network.CreateNode();
        await using var caller = network.CreateNode();
        var calls = 0;
        callee.Respond(WorkerMethods.Processor.Infer, (request, _) =>
        {
            calls++;
            return ValueTask.FromResult(request);
        });
        GrantExchange.Serve(callee, cluster.Grant(callee.PeerId, GrantRole.Gateway));
        var trusted = new TrustedRpcClient(caller, cluster.Verifier(), WorkerTrust.RoleOfMethod, ownGrant: null);

        var error = await ErrorOf(() => trusted.RequestAsync(callee.PeerId, WorkerMethods.Processor.Infer, new byte[] { 1 }, null, CancellationToken.None));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.Message, Does.Contain("processor grant"));
        Assert.That(error.NotDelivered, Is.True, "nothing of the request was sent");
        Assert.That(calls, Is.Zero);
    });

    /// <summary>
    /// A gateway presenting its grant to an Auth that serves only gateways (<see cref="TrustedRpcServer"/>, with a verifier of its own,
    /// <c>AuthVerifier</c>), and a processor holding a grant; the gateway's grant is <c>GatewayGrant</c>.
    /// </summary>
    private static async Task<(GatewayHarness H, GrantVerifier AuthVerifier, RoleGrant GatewayGrant)> StartWithTrustedAuthAsync(SimulationExecutor sim)
    {
        var cluster = new Cluster(sim);
        var authVerifier = cluster.Verifier();
        RoleGrant? gatewayGrant = null;
        var h = await GatewayHarness.StartAsync(Options(), time: sim.Clock,
            clientOf: node =>
            {
                gatewayGrant = cluster.Grant(node.PeerId, GrantRole.Gateway);
                return new TrustedRpcClient(node, cluster.Verifier(), WorkerTrust.RoleOfMethod, new HeldGrant(gatewayGrant));
            },
            authServerOf: node => new TrustedRpcServer(node, authVerifier, GrantRole.Gateway));
        GrantExchange.Serve(h.AuthNode, cluster.Grant(h.AuthNode.PeerId, GrantRole.Auth));
        var processor = await h.AddProcessorAsync();
        GrantExchange.Serve(processor.Node, cluster.Grant(processor.PeerId, GrantRole.Processor));
        return (h, authVerifier, gatewayGrant!);
    }

    [Test]
    public void AnAuthRefusingTheGatewayItself_IsNotTheUsersInvalidCredential_AndIsNotCached() => SimulationTest.Run(async sim =>
    {
        var (h, authVerifier, gatewayGrant) = await StartWithTrustedAuthAsync(sim);
        await using var _ = h;
        var otherKey = "ApiKey " + h.Auth.AddApiKey("user-2");
        Assert.That((await h.InferAsync(Prompt("warm up"))).Text, Is.Not.Empty, "Auth accepts the gateway's grant");

        // The operator revokes the gateway's grant; Auth learns it first.
        authVerifier.Revocations = new RevocationList([gatewayGrant.Serial], []);
        var refused = await ErrorOf(() => h.InferAsync(Prompt("hello"), otherKey));
        authVerifier.Revocations = RevocationList.Empty;
        var served = await h.InferAsync(Prompt("hello again"), otherKey);

        Assert.That(refused.Code, Is.EqualTo(RpcStatusCode.Unavailable), refused.Message);
        Assert.That(refused.Message, Does.Contain("not authorized by auth"));
        Assert.That(refused.Message, Does.Not.Contain("invalid credential"));
        Assert.That(refused.NotDelivered, Is.True, "the gateway did none of the request's work: its caller may try another gateway");
        Assert.That(served.Text, Is.Not.Empty, "the refusal was not cached as the key's verdict");
    });

    [Test]
    public void AnAuthRefusingTheGatewayWithoutTheMark_AsAnOlderAuthDoes_IsNotTheUsersInvalidCredential_AndIsNotCached() => SimulationTest.Run(async sim =>
    {
        var h = await GatewayHarness.StartAsync(Options(), time: sim.Clock);
        await using var _ = h;
        await h.AddProcessorAsync();
        // auth.validate never refuses a credential with PermissionDenied: this can only be Auth refusing the gateway.
        h.Auth.ValidateRefusal = new RpcException(RpcStatusCode.PermissionDenied, "this node serves only peers holding a gateway grant of cluster c; its grant expired");

        var refused = await ErrorOf(() => h.InferAsync(Prompt("hello")));
        h.Auth.ValidateRefusal = null;
        var served = await h.InferAsync(Prompt("hello again"));

        Assert.That(refused.Code, Is.EqualTo(RpcStatusCode.Unavailable), refused.Message);
        Assert.That(refused.Message, Does.Contain("not authorized by auth"));
        Assert.That(served.Text, Is.Not.Empty, "the refusal was not cached as the key's verdict");
        Assert.That(h.Auth.ValidateCalls, Is.EqualTo(2));
    });

    [Test]
    public void AnAccountCall_ToAnAuthRefusingTheGateway_IsUnavailable_WhileAuthsOwnPermissionDeniedPassesThrough() => SimulationTest.Run(async sim =>
    {
        var (h, authVerifier, gatewayGrant) = await StartWithTrustedAuthAsync(sim);
        await using var _ = h;
        var revoke = new P2PInference.Workers.Contracts.Auth.RevokeApiKeyRequest { Token = "some-token", KeyId = "key-9" };
        // Auth's own verdict about the request: another user's key.
        h.AuthNode.Respond(WorkerMethods.Auth.RevokeApiKey, (_, _) => throw new RpcException(RpcStatusCode.PermissionDenied, "the API key belongs to another user"));
        var authsOwn = await ErrorOf(() => h.CallAsync(WorkerMethods.Gateway.RevokeApiKey, revoke, P2PInference.Workers.Contracts.Auth.RevokeApiKeyResponse.Parser));

        authVerifier.Revocations = new RevocationList([gatewayGrant.Serial], []);
        var login = new P2PInference.Workers.Contracts.Auth.LoginRequest { Email = "a@example.com", Password = "secret" };
        var refused = await ErrorOf(() => h.CallAsync(WorkerMethods.Gateway.Login, login, P2PInference.Workers.Contracts.Auth.LoginResponse.Parser));

        Assert.That(authsOwn.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
        Assert.That(authsOwn.Message, Is.EqualTo("the API key belongs to another user"));
        Assert.That(refused.Code, Is.EqualTo(RpcStatusCode.Unavailable), refused.Message);
        Assert.That(refused.Message, Does.Contain("not authorized by auth"));
        Assert.That(refused.NotDelivered, Is.True, "Auth refused it before its handler: nothing was done, the client may try another gateway");
        Assert.That(h.Auth.Calls.Select(c => c.Method), Has.None.EqualTo(WorkerMethods.Auth.Login));
    });
}
