using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Harness;

/// <summary>The cluster without nodes (no hosts, no stores): its clock, seed, waits and options.</summary>
public sealed class TestClusterUnitTests
{
    [Test]
    public void WaitUntil_OnAnEmptyCluster_TimesOutNamingTheConditionAndTheSeed() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, CancellationToken.None);
        using var tick = sim.Clock.CreateTimer(_ => { }, null, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1));

        await Assert.ThatAsync(() => cluster.WaitUntilAsync(() => cluster.Nodes.Count > 0, TimeSpan.FromMinutes(10), CancellationToken.None),
            Throws.TypeOf<TimeoutException>().With.Message.Contain("cluster.Nodes.Count > 0").And.Message.Contain("P2P_TEST_SEED=31337"));
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromMinutes(10)), "timed out on virtual time, at the deadline");
    }, SimulationTest.Options(seed: 31337));

    [Test]
    public void WaitUntil_FollowsAChainOfDelays_ToTheMomentTheConditionHolds() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, CancellationToken.None);
        var ticks = 0;
        async Task TickFiveTimesAsync()
        {
            for (var i = 0; i < 5; i++)
            {
                await Task.Delay(TimeSpan.FromSeconds(3), cluster.Time);
                ticks++;
            }
        }
        var ticking = TickFiveTimesAsync();

        await cluster.WaitUntilAsync(() => ticks == 5, TimeSpan.FromMinutes(1), CancellationToken.None);

        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(15)));
        await ticking;
    });

    [Test]
    public void WaitUntil_WithAnAsyncCheck_LetsTheCheckTakeVirtualTime_AndChecksAgainAtTheNextTimer() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, CancellationToken.None);
        // What a running node always has (keep-alives, refreshes): something due every second.
        using var keepAlive = cluster.Time.CreateTimer(_ => { }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        var checkedAt = new List<TimeSpan>();

        await cluster.WaitUntilAsync(async () =>
        {
            checkedAt.Add(sim.Clock.Elapsed);
            // A check that itself takes virtual time, as a ping with latency would.
            await Task.Delay(TimeSpan.FromSeconds(2), cluster.Time);
            return checkedAt.Count == 3;
        }, TimeSpan.FromMinutes(1), CancellationToken.None);

        Assert.That(checkedAt, Is.EqualTo(new[] { TimeSpan.Zero, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(6) }));
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(8)));
    });

    [Test]
    public void AdvanceAsync_MovesTheSimulationClockByExactlyTheDelta_FiringEveryTimerOnTheWay() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, CancellationToken.None);
        var fired = 0;
        using var timer = cluster.Time.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        await cluster.AdvanceAsync(TimeSpan.FromSeconds(10), CancellationToken.None);

        Assert.That(fired, Is.EqualTo(10));
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(10)));
    });

    [Test]
    public void Cluster_RunsOnTheSimulationsClockAndSeed() => SimulationTest.Run(async sim =>
    {
        await using var a = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, CancellationToken.None);
        await using var b = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, CancellationToken.None);

        Assert.That(a.Time, Is.SameAs(sim.Clock));
        Assert.That(a.Seed, Is.EqualTo(5));
        Assert.That(a.Data.ApiKey(), Is.EqualTo(b.Data.ApiKey()), "test data derives from the seed");
    }, SimulationTest.Options(seed: 5));

    [Test]
    public void Start_OutsideASimulation_TellsTheUserToWrapTheTest()
    {
        Assert.That(() => TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, CancellationToken.None),
            Throws.InvalidOperationException.With.Message.Contain("SimulationTest.Run"));
    }

    [Test]
    public void Start_RejectsDuplicateNodeNames() => SimulationTest.Run(async _ =>
    {
        var options = new TestClusterOptions { NodeSpecs = [new("a"), new("a")] };

        await Assert.ThatAsync(() => TestCluster.StartAsync(options, CancellationToken.None), Throws.ArgumentException);
    });

    [Test]
    public void Start_RejectsCustomDiscoveryWithoutAFactory() => SimulationTest.Run(async _ =>
    {
        var options = new TestClusterOptions { Nodes = 0, Discovery = TestDiscoveryKind.Custom };

        await Assert.ThatAsync(() => TestCluster.StartAsync(options, CancellationToken.None), Throws.ArgumentException);
    });

    [Test]
    public void NodeSpec_RejectsNamesThatAreNotAnAddressComponent()
    {
        Assert.That(() => new TestNodeSpec("a/b"), Throws.ArgumentException);
        Assert.That(() => new TestNodeSpec(""), Throws.ArgumentException);
    }

    [Test]
    public void Node_UnknownName_FailsListingTheNodes() => SimulationTest.Run(async _ =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, CancellationToken.None);

        Assert.That(() => cluster["nope"], Throws.InstanceOf<KeyNotFoundException>().With.Message.Contain("nope"));
    });
}
