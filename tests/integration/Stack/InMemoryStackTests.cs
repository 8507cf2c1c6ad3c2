using System.Security.Cryptography;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit;
using P2PInference.TestKit.Conformance;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Stack;

/// <summary>
/// The full stack over the TestKit's in-memory network, no faults, on the simulation executor: one
/// thread, virtual time, every key and payload drawn from the seed, so a failure replays.
/// </summary>
public class InMemoryStackTests : HostStackConformanceTests
{
    private SimulationExecutor? _sim;

    protected InMemoryNetwork Network { get; private set; } = null!;

    protected SimulationExecutor Simulation => _sim ?? throw new InvalidOperationException("only inside a test body");

    protected override TimeProvider TimeProvider => Simulation.Clock;

    protected virtual InMemoryNetwork CreateNetwork(SimulationExecutor sim) => new(sim.Clock, sim.Seed);

    protected override Task RunAsync(Func<Task> test)
    {
        // Synchronous: the simulation runs on this thread to its end; a failure throws from here.
        SimulationTest.Run(async sim =>
        {
            _sim = sim;
            Network = CreateNetwork(sim);
            await RunWithHostsAsync(test);
        });
        return Task.CompletedTask;
    }

    [TearDown]
    public void ForgetSimulation() => _sim = null;

    protected override KeyPair CreateIdentity(string nodeName) => KeyPair.FromRandom(Simulation.CreateRandom("identity", nodeName));

    protected override Random CreateRandom(string purpose) => Simulation.CreateRandom("test", purpose);

    protected override ITransport CreateTransport(string nodeName) => Network.CreateTransport(nodeName);

    protected override Multiaddress ListenAddress(string nodeName) => InMemoryNetwork.AddressOf(nodeName);
}

/// <summary>Every write sliced into 1..7-byte pieces: exercises every parser's partial-read paths.</summary>
public sealed class SlicedInMemoryStackTests : InMemoryStackTests
{
    // Slicing at a few bytes per piece makes bulk data slow; the suite's properties hold at any size.
    protected override int LargeTransferBytes => 2 * 1024 * 1024;

    protected override int ConcurrentStreams => 200;

    protected override InMemoryNetwork CreateNetwork(SimulationExecutor sim)
    {
        var network = base.CreateNetwork(sim);
        network.ConfigureLinks(link => link.MaxSliceSize = 7);
        return network;
    }
}

/// <summary>5 ms ± 2 ms on every link, paid in virtual time on the simulation executor.</summary>
public sealed class LatencyInMemoryStackTests : InMemoryStackTests
{
    protected override int LargeTransferBytes => 8 * 1024 * 1024;

    protected override InMemoryNetwork CreateNetwork(SimulationExecutor sim)
    {
        var network = base.CreateNetwork(sim);
        network.ConfigureLinks(link =>
        {
            link.Latency = TimeSpan.FromMilliseconds(5);
            link.Jitter = TimeSpan.FromMilliseconds(2);
        });
        return network;
    }

    [Test]
    public Task Latency_IsPaidOnVirtualTime() => RunAsync(async () =>
    {
        var (a, b, _) = await ConnectedPairAsync();
        var before = Simulation.Clock.Elapsed;

        await a.PingAsync(b.PeerId, TestToken);

        Assert.That(Simulation.Clock.Elapsed - before, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(6)),
            "a ping crosses two links of at least 3 ms each");
    });
}

/// <summary>Corruption on the wire is caught by Noise's AEAD and ends only that connection.</summary>
public sealed class CorruptionInMemoryStackTests
{
    [Test]
    [CancelAfter(30_000)]
    public async Task CorruptedByte_EndsTheConnectionWithNoiseError_AndOtherPeersAreUnaffected(CancellationToken token)
    {
        var seed = TestSeed.Choose();
        var network = new InMemoryNetwork(seed: seed);
        // Keys from the test's seed too: peer ids decide tie-breaks, so a seed replays them.
        var keys = new Random(seed);
        await using var a = await StartAsync(network, "a", keys, token);
        await using var b = await StartAsync(network, "b", keys, token);
        await using var c = await StartAsync(network, "c", keys, token);
        var healthy = await c.ConnectAsync(b.AdvertisedAddresses[0], token);
        var corrupted = await a.ConnectAsync(b.AdvertisedAddresses[0], token);
        var stream = await a.OpenStreamAsync(b.PeerId, "/ipfs/ping/1.0.0", token);
        // Quiet the connection first: a background write of a's (its identify answer, a window update)
        // landing between reading BytesWritten and setting the offset would carry the offset past, and
        // nothing would be corrupted at all.
        await a.IdentifyAsync(b.PeerId, token);
        await b.IdentifyAsync(a.PeerId, token);
        var warmUp = RandomNumberGenerator.GetBytes(32);
        await stream.WriteAsync(warmUp, token);
        await stream.ReadExactlyAsync(new byte[32], token);

        // The upgrade and negotiation are done; flip one bit in what a sends next.
        network.Link("a", "b").CorruptByteAt = network.Link("a", "b").BytesWritten + 20;
        // The flipped byte may land in our ping or in background traffic (identify) around it; either
        // way b's Noise rejects the frame and drops the connection, so within a few exchanges the
        // stream must fail — and never echo corrupted data.
        var detected = await CatchAsync(async () =>
        {
            for (var i = 0; i < 20; i++)
            {
                var ping = RandomNumberGenerator.GetBytes(32);
                await stream.WriteAsync(ping, token);
                var echo = new byte[32];
                await stream.ReadExactlyAsync(echo, token);
                Assert.That(echo, Is.EqualTo(ping), "an echo that arrives is intact");
            }
        });
        Assert.That(detected, Is.InstanceOf<IOException>(), "b drops the connection instead of answering corrupted data");
        await CatchAsync(() => corrupted.Completion.WaitAsync(token));
        Assert.That(corrupted.IsClosed, Is.True);
        Assert.That(await c.PingAsync(b.PeerId, token), Is.GreaterThanOrEqualTo(TimeSpan.Zero), "b still serves c");
        Assert.That(healthy.IsClosed, Is.False);
    }

    [Test]
    [CancelAfter(30_000)]
    public async Task CorruptedByte_IsReportedAsNoiseException_ByTheReceiver(CancellationToken token)
    {
        var seed = TestSeed.Choose();
        var network = new InMemoryNetwork(seed: seed);
        var (rawA, rawB) = await ConnectRawAsync(network, token);
        var keys = new Random(seed);
        var keyA = P2PInference.Facilities.Identity.KeyPair.FromRandom(keys);
        var keyB = P2PInference.Facilities.Identity.KeyPair.FromRandom(keys);
        var respond = NoiseHandshake.RespondAsync(rawB.Stream, keyB, token);
        await using var secureA = await NoiseHandshake.InitiateAsync(rawA.Stream, keyA, keyB.PeerId, token);
        await using var secureB = await respond;

        network.Link("a", "b").CorruptByteAt = network.Link("a", "b").BytesWritten + 10;
        await secureA.WriteAsync(new byte[100], token);

        Assert.That(async () => await secureB.ReadAsync(new byte[100], token), Throws.InstanceOf<NoiseException>());
    }

    private static async Task<(RawConnection A, RawConnection B)> ConnectRawAsync(InMemoryNetwork network, CancellationToken token)
    {
        var listener = await network.CreateTransport("b").ListenAsync(InMemoryNetwork.AddressOf("b"), token);
        var dial = network.CreateTransport("a").DialAsync(InMemoryNetwork.AddressOf("b"), token);
        var accepted = await listener.AcceptAsync(token);
        return (await dial, accepted);
    }

    private static async Task<P2PInference.Facilities.Net.Host.P2PHost> StartAsync(InMemoryNetwork network, string name, Random keys, CancellationToken token)
    {
        var host = new P2PInference.Facilities.Net.Host.P2PHost(new P2PInference.Facilities.Net.Host.HostOptions
        {
            Identity = P2PInference.Facilities.Identity.KeyPair.FromRandom(keys),
            Transports = [network.CreateTransport(name)],
        });
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], token);
        return host;
    }

    private static async Task<Exception?> CatchAsync(Func<Task> action)
    {
        try
        {
            await action();
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }
}
