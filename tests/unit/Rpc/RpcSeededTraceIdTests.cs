using Microsoft.Extensions.Time.Testing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>
/// Trace ids of calls made without one come from the node's random source: a seed replays them, the
/// system source (the default) makes them unique. An RpcNode built with no options takes its host's source.
/// </summary>
[TestFixture]
public sealed class RpcSeededTraceIdTests
{
    private const string Method = "echo-trace";

    /// <summary>Two real hosts and RPC nodes on the in-memory network; the trace ids the server saw, in call order.</summary>
    private static List<string> TraceIdsOverTheRealStack(int seed, bool seededHosts) => SimulationTest.Run(async sim =>
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(1), sim.Clock);
        var ct = deadline.Token;
        var network = new InMemoryNetwork(sim.Clock, seed);
        await using var serverHost = await StartHostAsync(sim, network, "server", seededHosts, ct);
        await using var clientHost = await StartHostAsync(sim, network, "client", seededHosts, ct);
        await using var server = new RpcNode(serverHost);
        await using var client = new RpcNode(clientHost);
        server.Respond(Method, (_, context) => ValueTask.FromResult<ReadOnlyMemory<byte>>(System.Text.Encoding.ASCII.GetBytes(context.TraceId)));
        await clientHost.ConnectAsync(serverHost.AdvertisedAddresses[0], ct);

        var seen = new List<string>();
        for (var i = 0; i < 3; i++)
            seen.Add(System.Text.Encoding.ASCII.GetString(await client.RequestAsync(serverHost.PeerId, Method, ReadOnlyMemory<byte>.Empty, null, ct)));
        return seen;
    }, SimulationTest.Options(seed));

    private static async Task<P2PHost> StartHostAsync(SimulationExecutor sim, InMemoryNetwork network, string name, bool seeded, CancellationToken ct)
    {
        var options = sim.HostOptionsFor(network, name);
        return await sim.StartHostAsync(network, name, seeded ? options : options with { RandomSource = SystemRandomSource.Instance }, ct);
    }

    [Test]
    public void SeededHosts_ReplayTheirTraceIds_OverTheRealStack()
    {
        var first = TraceIdsOverTheRealStack(seed: 404, seededHosts: true);
        var second = TraceIdsOverTheRealStack(seed: 404, seededHosts: true);

        Assert.That(second, Is.EqualTo(first));
        Assert.That(first, Is.Unique);
        Assert.That(first, Has.All.Match("^[0-9a-f]{32}$"), "the shape of the Guid-based ids they replace");
    }

    [Test]
    public void SystemSourceHosts_DrawFreshTraceIds_OverTheRealStack()
    {
        var first = TraceIdsOverTheRealStack(seed: 404, seededHosts: false);
        var second = TraceIdsOverTheRealStack(seed: 404, seededHosts: false);

        Assert.That(second, Is.Not.EqualTo(first));
    }

    // Plain async: the twin does not run on the simulation executor yet, and no call here waits on time.
    [Test]
    [CancelAfter(10_000)]
    public async Task Twin_TakesTraceIdsFromItsOptionsRandomSource(CancellationToken ct)
    {
        async Task<List<string>> CallsAsync(IRandomSource source)
        {
            var network = new InMemoryRpcNetwork(new FakeTimeProvider());
            await using var server = network.CreateNode(KeyPair.FromSeed(new byte[32]).PeerId);
            await using var client = network.CreateNode(KeyPair.FromSeed(Enumerable.Repeat((byte)1, 32).ToArray()).PeerId, new RpcOptions { RandomSource = source });
            server.Respond(Method, (_, context) => ValueTask.FromResult<ReadOnlyMemory<byte>>(System.Text.Encoding.ASCII.GetBytes(context.TraceId)));
            var seen = new List<string>();
            for (var i = 0; i < 3; i++)
                seen.Add(System.Text.Encoding.ASCII.GetString(await client.RequestAsync(server.PeerId, Method, ReadOnlyMemory<byte>.Empty, null, ct)));
            return seen;
        }

        var first = await CallsAsync(new SeededRandomSource(new Random(8)));
        var second = await CallsAsync(new SeededRandomSource(new Random(8)));
        var system = await CallsAsync(SystemRandomSource.Instance);

        Assert.That(second, Is.EqualTo(first));
        Assert.That(system, Is.Not.EqualTo(first));
    }
}
