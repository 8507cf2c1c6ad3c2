using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using static P2PInference.Tests.Unit.Support.RpcTestCalls;

namespace P2PInference.Tests.Unit.Trust;

/// <summary>
/// A server that serves only callers holding a grant refuses the others before their handler runs:
/// PermissionDenied, marked not delivered, so the refused caller (say, a gateway whose grant lapsed)
/// can tell a refusal of itself from the handler's own verdict.
/// </summary>
[TestFixture]
public sealed class TrustedRpcServerTests
{
    [Test]
    public void ACallerWithoutAValidGrant_IsPermissionDenied_NotDelivered_AndAGrantedCallerIsServed() => SimulationTest.Run(async sim =>
    {
        var cluster = new ClusterKey(KeyPair.FromRandom(sim.CreateRandom("cluster", "key")));
        var verifier = new GrantVerifier(cluster.Id, sim.Clock);
        var network = new InMemoryRpcNetwork(sim.Clock);
        await using var server = network.CreateNode();
        await using var caller = network.CreateNode();
        var trusted = new TrustedRpcServer(server, verifier, GrantRole.Gateway);
        var calls = 0;
        trusted.Respond("echo", (request, _) =>
        {
            calls++;
            return ValueTask.FromResult(request);
        });
        trusted.RespondStreaming("items", (_, _) => OneItem(() => calls++));
        var now = sim.Clock.GetUtcNow();
        var grant = new HeldGrant(cluster.Issue(caller.PeerId, GrantRole.Gateway, now.AddDays(-1), now.AddDays(1), 1));
        var granted = new RpcCallOptions { Metadata = grant.Metadata };

        var unary = await ErrorOf(() => caller.RequestAsync(server.PeerId, "echo", new byte[] { 1 }, null, CancellationToken.None));
        var streaming = await ErrorOf(async () =>
        {
            await foreach (var _ in caller.RequestStreamAsync(server.PeerId, "items", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None))
            {
            }
        });
        var served = await caller.RequestAsync(server.PeerId, "echo", new byte[] { 1 }, granted, CancellationToken.None);

        Assert.Multiple(() =>
        {
            foreach (var error in new[] { unary, streaming })
            {
                Assert.That(error.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
                Assert.That(error.NotDelivered, Is.True, "refused before the handler ran");
            }
            Assert.That(served, Is.EqualTo(new byte[] { 1 }));
            Assert.That(calls, Is.EqualTo(1));
        });
    });
}
