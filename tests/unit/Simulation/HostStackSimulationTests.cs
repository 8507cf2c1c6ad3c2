using System.Text;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Simulation;

/// <summary>The real host stack (multistream, Noise, Yamux, identify, ping) over the in-memory network, on the simulation executor.</summary>
[TestFixture]
public sealed class HostStackSimulationTests
{
    private const string EchoProtocol = "/simulation/echo/1.0.0";

    /// <summary>What a run did; <c>Wire</c> is the digests of the bytes each host wrote, a→b and b→a.</summary>
    private sealed record Outcome(ulong TraceHash, long Steps, TimeSpan VirtualTime, string Log, (ulong AToB, ulong BToA) Wire);

    private static Outcome RunTwoHosts(int seed, ScheduleStrategy strategy = ScheduleStrategy.Fifo, bool aUsesOsEntropy = false)
    {
        var sim = new SimulationExecutor(seed, strategy);
        (ulong, ulong) wire = default;
        var log = sim.Run(async () =>
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(5), sim.Clock);
            var token = deadline.Token;
            var network = new InMemoryNetwork(sim.Clock, seed);
            network.ConfigureLinks(link =>
            {
                link.Latency = TimeSpan.FromMilliseconds(5);
                link.Jitter = TimeSpan.FromMilliseconds(3);
                link.DigestWrites = true;
            });
            await using var a = await SimulationExecutor.InNode("a", () => StartHostAsync(sim, network, "a", token, aUsesOsEntropy ? SystemRandomSource.Instance : null));
            await using var b = await SimulationExecutor.InNode("b", () => StartHostAsync(sim, network, "b", token));
            var lines = new List<string>();

            var connection = await a.ConnectAsync(b.AdvertisedAddresses[0], token);
            lines.Add($"connected {connection.RemotePeer == b.PeerId} at {sim.Clock.Elapsed.TotalMilliseconds} ms");

            var random = sim.CreateRandom("payloads");
            var echoes = await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
            {
                var payload = new byte[1000 + 5000 * i];
                random.NextBytes(payload);
                var stream = await a.OpenStreamAsync(b.PeerId, EchoProtocol, token);
                await using (stream)
                {
                    await stream.WriteAsync(payload, token);
                    await stream.CompleteWritesAsync(token);
                    using var received = new MemoryStream();
                    await stream.CopyToOnContextAsync(received, token);
                    return $"echo {i}: {received.ToArray().AsSpan().SequenceEqual(payload)} at {sim.Clock.Elapsed.TotalMilliseconds} ms";
                }
            }));
            lines.AddRange(echoes);

            var rtt = await a.PingAsync(b.PeerId, token);
            lines.Add($"ping {rtt.TotalMilliseconds} ms");
            var info = await b.IdentifyAsync(a.PeerId, token);
            lines.Add($"identify {info.PublicKey.ToPeerId() == a.PeerId} {string.Join(',', info.Protocols.Order(StringComparer.Ordinal))}");
            wire = (network.Link("a", "b").WriteDigest, network.Link("b", "a").WriteDigest);
            return string.Join('\n', lines);
        });
        return new Outcome(sim.TraceHash, sim.Steps, sim.Clock.Elapsed, log, wire);
    }

    private static async Task<P2PHost> StartHostAsync(SimulationExecutor sim, InMemoryNetwork network, string name, CancellationToken token, IRandomSource? entropy = null)
    {
        var options = sim.HostOptionsFor(network, name);
        var host = await sim.StartHostAsync(network, name, entropy is null ? options : options with { RandomSource = entropy }, token);
        host.Handle(EchoProtocol, async (context, ct) =>
        {
            await context.Stream.CopyToOnContextAsync(context.Stream, ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
        return host;
    }

    [Test]
    public void TwoHosts_ConnectAndEcho_OnTheExecutor()
    {
        var outcome = RunTwoHosts(seed: 2024);

        TestContext.Out.WriteLine(outcome);
        Assert.That(outcome.Log, Does.StartWith("connected True"));
        Assert.That(outcome.Log, Does.Not.Contain(": False"), "every echo returned its own payload");
        Assert.That(outcome.Log, Does.Contain("identify True").And.Contain(EchoProtocol));
        Assert.That(outcome.VirtualTime, Is.GreaterThan(TimeSpan.FromMilliseconds(10)), "link latency is paid in virtual time");
    }

    [Test]
    public void TwoHosts_WithTheSameSeed_ReplayTheSameTrace()
    {
        var first = RunTwoHosts(seed: 31337);
        var second = RunTwoHosts(seed: 31337);

        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void TwoHosts_WithTheSameSeed_PutTheSameBytesOnTheWire()
    {
        var first = RunTwoHosts(seed: 4711);
        var second = RunTwoHosts(seed: 4711);

        Assert.That(second.Wire, Is.EqualTo(first.Wire), "Noise ephemeral keys and ping payloads are drawn from the seed");
        Assert.That(first.Wire.AToB, Is.Not.EqualTo(first.Wire.BToA));
    }

    [Test]
    public void AHostOnTheOsEntropy_PutsOtherBytesOnTheWire_ThoughItsTraceReplays()
    {
        var first = RunTwoHosts(seed: 4711, aUsesOsEntropy: true);
        var second = RunTwoHosts(seed: 4711, aUsesOsEntropy: true);

        // What the seeded entropy above buys: the trace alone cannot tell, the bytes can.
        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash));
        Assert.That(second.Wire.AToB, Is.Not.EqualTo(first.Wire.AToB), "a's ephemeral key came from the OS");
        Assert.That(second.Wire.BToA, Is.Not.EqualTo(first.Wire.BToA), "b encrypts under a key a's ephemeral key went into");
    }

    [Test]
    public void TwoHosts_WithAnotherSeed_TakeAnotherTrace()
    {
        var first = RunTwoHosts(seed: 1);
        var second = RunTwoHosts(seed: 2);

        Assert.That(second.TraceHash, Is.Not.EqualTo(first.TraceHash), "link jitter is drawn from the seed");
    }

    [Test]
    public void TwoHosts_UnderTheRandomSchedule_ReplayPerSeed()
    {
        var first = RunTwoHosts(seed: 5, ScheduleStrategy.Random);
        var second = RunTwoHosts(seed: 5, ScheduleStrategy.Random);

        Assert.That(second, Is.EqualTo(first));
        Assert.That(first.Log, Does.Not.Contain(": False"));
    }

    [Test]
    public void IdleConnection_KeepAlivesRunOnTheSimulationClock() => SimulationTest.Run(async sim =>
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        await using var a = await StartHostAsync(sim, network, "a", CancellationToken.None);
        await using var b = await StartHostAsync(sim, network, "b", CancellationToken.None);
        var connection = await a.ConnectAsync(b.AdvertisedAddresses[0], CancellationToken.None);

        // Host options leave Yamux on its default (system) clock: the host must hand its own clock to the session.
        Assert.That(connection.Session.TimeProvider, Is.SameAs(sim.Clock));
        // Three keep-alive intervals (30 s), short of the host's idle-connection timeout (2 min).
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(95));

        Assert.That(connection.Session.IsClosed, Is.False, "keep-alive pings, sent and answered on virtual time, keep the idle connection up");
        Assert.That(await a.PingAsync(b.PeerId, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    });
    [Test]
    public void ClosingAConnection_CancelsItsHandlers_AndBothHostsForgetIt() => SimulationTest.Run(async sim =>
    {
        const string waitProtocol = "/simulation/wait/1.0.0";
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        await using var a = await SimulationExecutor.InNode("a", () => StartHostAsync(sim, network, "a", CancellationToken.None));
        await using var b = await SimulationExecutor.InNode("b", () => StartHostAsync(sim, network, "b", CancellationToken.None));
        var handlerCancelled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        b.Handle(waitProtocol, async (_, ct) =>
        {
            try
            {
                await Task.Delay(Timeout.InfiniteTimeSpan, sim.Clock, ct);
            }
            catch (OperationCanceledException)
            {
                handlerCancelled.TrySetResult(true);
            }
        });
        var disconnectedAtA = 0;
        var disconnectedAtB = 0;
        a.PeerDisconnected += _ => disconnectedAtA++;
        b.PeerDisconnected += _ => disconnectedAtB++;

        var connection = await a.ConnectAsync(b.AdvertisedAddresses[0], CancellationToken.None);
        await a.OpenStreamAsync(b.PeerId, waitProtocol, CancellationToken.None);
        await sim.Clock.RunUntilIdleAsync();
        await connection.DisposeAsync();

        Assert.That(await handlerCancelled.Task, Is.True, "the handler's token is cancelled when its connection closes");
        await sim.Clock.WaitUntilAsync(() => disconnectedAtB == 1 && b.GetConnection(a.PeerId) is null, TimeSpan.FromMinutes(1));
        Assert.That(a.GetConnection(b.PeerId), Is.Null);
        Assert.That(disconnectedAtA, Is.EqualTo(1), "the host raises PeerDisconnected once per connection");
        Assert.That(disconnectedAtB, Is.EqualTo(1));
    });
}
