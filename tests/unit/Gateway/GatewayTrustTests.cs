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
}
