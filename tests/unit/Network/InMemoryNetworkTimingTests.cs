using P2PInference.Facilities.Addressing;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Network;

[TestFixture]
public sealed class InMemoryNetworkTimingTests
{
    private static readonly TimeSpan Ms = TimeSpan.FromMilliseconds(1);

    [Test]
    public void Latency_DeliversWrite_OnlyWhenFakeTimeReachesIt() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        network.Link("a", "b").Latency = 100 * Ms;

        await dialer.Stream.WriteAsync("ping"u8.ToArray(), ct);
        var read = accepted.Stream.ReadExactlyAsync(4, ct);
        await time.AdvanceAsync(99 * Ms);
        Assert.That(read.IsCompleted, Is.False, "not before the latency has passed");

        await time.AdvanceAsync(1 * Ms);
        Assert.That(await read, Is.EqualTo("ping"u8.ToArray()));
    });

    [Test]
    public void Latency_AppliesToEndOfStream_AfterTheData() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        network.Link("a", "b").Latency = 50 * Ms;

        await dialer.Stream.WriteAsync("x"u8.ToArray(), ct);
        await dialer.DisposeAsync();
        var all = accepted.Stream.ReadToEndAsync(ct);
        Assert.That(all.IsCompleted, Is.False);

        await time.AdvanceAsync(50 * Ms);
        Assert.That(await all, Is.EqualTo("x"u8.ToArray()));
    });

    [Test]
    public void Jitter_VariesDelivery_WithinBounds_AndKeepsOrder() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time, sim.Seed);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var link = network.Link("a", "b");
        link.Latency = 100 * Ms;
        link.Jitter = 50 * Ms;

        for (byte i = 0; i < 40; i++) await dialer.Stream.WriteAsync(new[] { i }, ct);
        var first = accepted.Stream.ReadSomeAsync(1, ct);
        await time.AdvanceAsync(49 * Ms);
        Assert.That(first.IsCompleted, Is.False, "latency - jitter is the earliest delivery");

        await time.AdvanceAsync(101 * Ms);
        Assert.That(await first, Is.EqualTo(1));
        Assert.That(await accepted.Stream.ReadExactlyAsync(39, ct), Is.EqualTo(Enumerable.Range(1, 39).Select(i => (byte)i).ToArray()));
    });

    [Test]
    public void Jitter_GivesDifferentArrivalTimes_ForDifferentWrites() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time, sim.Seed);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var link = network.Link("a", "b");
        link.Latency = 100 * Ms;
        link.Jitter = 50 * Ms;

        // Spaced writes so that order-keeping does not mask the jitter; the delivery timer tells when each arrives.
        var arrivals = new List<TimeSpan>();
        for (var i = 0; i < 10; i++)
        {
            await dialer.Stream.WriteAsync(new byte[1], ct);
            var due = time.NextDue ?? throw new AssertionException("a delayed write arms a timer");
            arrivals.Add(due - time.GetUtcNow());
            var read = accepted.Stream.ReadSomeAsync(1, ct);
            await time.AdvanceAsync(due - time.GetUtcNow());
            Assert.That(await read, Is.EqualTo(1));
            await time.AdvanceAsync(200 * Ms);
        }

        Assert.That(arrivals, Has.All.InRange(50 * Ms, 150 * Ms));
        Assert.That(arrivals.Distinct().Count(), Is.GreaterThan(1));
    });

    [Test]
    public void Bandwidth_DelaysDelivery_InProportionToSize() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        network.Link("a", "b").BandwidthBytesPerSecond = 1000;

        await dialer.Stream.WriteAsync(new byte[500], ct);
        await dialer.Stream.WriteAsync(new byte[500], ct);
        var firstHalf = accepted.Stream.ReadExactlyAsync(500, ct);
        await time.AdvanceAsync(499 * Ms);
        Assert.That(firstHalf.IsCompleted, Is.False, "500 bytes at 1000 B/s take 500 ms");

        await time.AdvanceAsync(1 * Ms);
        Assert.That((await firstHalf).Length, Is.EqualTo(500));
        var secondHalf = accepted.Stream.ReadExactlyAsync(500, ct);
        await time.AdvanceAsync(499 * Ms);
        Assert.That(secondHalf.IsCompleted, Is.False, "the second write queues behind the first");

        await time.AdvanceAsync(1 * Ms);
        Assert.That((await secondHalf).Length, Is.EqualTo(500));
    });

    [Test]
    public void BandwidthAndLatency_Add() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var link = network.Link("a", "b");
        link.BandwidthBytesPerSecond = 10_000;
        link.Latency = 20 * Ms;

        await dialer.Stream.WriteAsync(new byte[100], ct); // 10 ms on the wire + 20 ms latency
        var read = accepted.Stream.ReadExactlyAsync(100, ct);
        await time.AdvanceAsync(29 * Ms);
        Assert.That(read.IsCompleted, Is.False);

        await time.AdvanceAsync(1 * Ms);
        Assert.That((await read).Length, Is.EqualTo(100));
    });

    [Test]
    public void Dial_TakesOneRoundTrip_OfLinkLatency() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        await using var listener = await network.CreateTransport("b").ListenAsync(Multiaddress.Memory("b"), ct);
        network.Link("a", "b").Latency = 10 * Ms;
        network.Link("b", "a").Latency = 15 * Ms;

        var dial = network.CreateTransport("a").DialAsync(Multiaddress.Memory("b"), ct).AsTask();
        await time.AdvanceAsync(24 * Ms);
        Assert.That(dial.IsCompleted, Is.False);

        await time.AdvanceAsync(1 * Ms);
        await using var connection = await dial;
        await using var accepted = await listener.AcceptAsync(ct);
        Assert.That(accepted.RemoteAddress, Is.EqualTo(Multiaddress.Memory("a")));
    });

    [Test]
    public void Hold_KeepsBytesPastTheirLatency_AndReleaseDeliversThem() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var link = network.Link("a", "b");
        link.Latency = 10 * Ms;
        link.Hold();

        await dialer.Stream.WriteAsync("late"u8.ToArray(), ct);
        var read = accepted.Stream.ReadExactlyAsync(4, ct);
        await time.AdvanceAsync(100 * Ms);
        Assert.That(read.IsCompleted, Is.False);

        link.Release();
        Assert.That(await read, Is.EqualTo("late"u8.ToArray()));
    });

    [Test]
    public void Release_BeforeLatencyPassed_StillWaitsForTheLatency() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var link = network.Link("a", "b");
        link.Latency = 100 * Ms;
        link.Hold();
        await dialer.Stream.WriteAsync("x"u8.ToArray(), ct);
        await time.AdvanceAsync(10 * Ms);

        link.Release();
        var read = accepted.Stream.ReadSomeAsync(1, ct);
        await time.AdvanceAsync(89 * Ms);
        Assert.That(read.IsCompleted, Is.False);

        await time.AdvanceAsync(1 * Ms);
        Assert.That(await read, Is.EqualTo(1));
    });

    [Test]
    public void ResetAfterBytes_WithLatency_DeliversTheLimitFirst() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var link = network.Link("a", "b");
        link.Latency = 10 * Ms;
        link.ResetAfterBytes = 3;

        await Assert.ThatAsync(async () => await dialer.Stream.WriteAsync("abcdef"u8.ToArray(), ct), Throws.TypeOf<IOException>());
        await time.AdvanceAsync(10 * Ms);

        Assert.That(await accepted.Stream.ReadExactlyAsync(3, ct), Is.EqualTo("abc"u8.ToArray()));
        await Assert.ThatAsync(async () => await accepted.Stream.ReadSomeAsync(1, ct), Throws.TypeOf<IOException>());
    });

    [Test]
    public void Latency_DoesNotArmTimers_WhenNoFaultsAreSet() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var time = sim.Clock;
        var network = new InMemoryNetwork(time);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);

        for (var i = 0; i < 100; i++) await dialer.Stream.WriteAsync(new byte[10], ct);

        Assert.That(time.PendingTimers, Is.Zero, "the fault-free path uses no timers");
        Assert.That((await accepted.Stream.ReadExactlyAsync(1000, ct)).Length, Is.EqualTo(1000));
    });
}
