using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Tests.Unit.Support;
using P2PInference.Workers.Hosting;
using static P2PInference.Tests.Unit.Support.RpcTestCalls;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary>
/// A draining worker turns new calls away before their handlers run, so its refusal reaches the
/// caller as Unavailable marked not delivered — over the twin and over the real node — and the
/// caller may send the call to another provider, whether or not it is idempotent.
/// </summary>
[TestFixture]
public sealed class DrainingRefusalTests
{
    private const string Echo = "echo";
    private const string Count = "count";

    /// <summary>Drains a server with a unary and a streaming method, calls both, and returns what the caller got.</summary>
    private static async Task<(RpcException Unary, RpcException Streaming, int HandlerCalls)> RefusalsAsync(IRpcServer server, IRpcClient client, PeerId serverId,
        CancellationToken ct)
    {
        var draining = new DrainingRpcServer(server);
        var calls = 0;
        draining.Respond(Echo, (request, _) =>
        {
            calls++;
            return ValueTask.FromResult(request);
        });
        draining.RespondStreaming(Count, (_, _) => OneItem(() => calls++));
        Assert.That(await client.RequestAsync(serverId, Echo, new byte[] { 7 }, null, ct), Is.EqualTo(new byte[] { 7 }));

        draining.BeginDraining();
        var unary = await ErrorOf(() => client.RequestAsync(serverId, Echo, new byte[] { 7 }, null, ct));
        var streaming = await ErrorOf(async () =>
        {
            await foreach (var _ in client.RequestStreamAsync(serverId, Count, ReadOnlyMemory<byte>.Empty, null, ct))
            {
            }
        });
        Assert.That(draining.InFlight, Is.Zero, "a refused call counted itself and gave its count back");
        Assert.That(draining.Drained.IsCompleted, Is.True);
        return (unary, streaming, calls);
    }

    private static void AssertRefusedUndelivered((RpcException Unary, RpcException Streaming, int HandlerCalls) outcome)
    {
        Assert.Multiple(() =>
        {
            foreach (var error in new[] { outcome.Unary, outcome.Streaming })
            {
                Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
                Assert.That(error.Message, Is.EqualTo(DrainingRpcServer.StoppingMessage));
                Assert.That(error.NotDelivered, Is.True, "refused before the handler ran: the caller may fail over");
            }
            Assert.That(outcome.HandlerCalls, Is.EqualTo(1), "only the call made before draining reached a handler");
        });
    }

    [Test]
    public void ADrainingWorkersRefusal_IsUnavailableAndNotDelivered_OverTheTwin() => AssertRefusedUndelivered(SimulationTest.Run(async sim =>
    {
        var network = new InMemoryRpcNetwork(sim.Clock);
        await using var server = network.CreateNode();
        await using var client = network.CreateNode();
        return await RefusalsAsync(server, client, server.PeerId, CancellationToken.None);
    }));

    [Test]
    public void ADrainingWorkersRefusal_IsUnavailableAndNotDelivered_OverTheRealNode() => AssertRefusedUndelivered(SimulationTest.Run(async sim =>
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(1), sim.Clock);
        await using var stack = new SimulatedRpcStack(sim);
        var (_, server) = await stack.NodeAsync("server", deadline.Token);
        var (_, client) = await stack.NodeAsync("client", deadline.Token);
        return await RefusalsAsync(server, client, server.PeerId, deadline.Token);
    }));
}
