using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Simulation;

/// <summary>How a test moves the simulation clock: idle is exact, advances run what falls due on the way.</summary>
[TestFixture]
public sealed class SimulationClockAdvanceTests
{
    [Test]
    public void RunUntilIdleAsync_RunsEveryReadyContinuation_WithoutMovingTheClock() => SimulationTest.Run(async sim =>
    {
        var done = 0;
        var timerFired = false;
        using var timer = sim.Clock.CreateTimer(_ => timerFired = true, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        for (var i = 0; i < 10; i++) _ = Chain(i);

        await sim.Clock.RunUntilIdleAsync();

        Assert.That(done, Is.EqualTo(10));
        Assert.That(timerFired, Is.False);
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.Zero));

        async Task Chain(int depth)
        {
            for (var j = 0; j < depth; j++) await Task.Yield();
            done++;
        }
    });

    [Test]
    public void AdvanceAsync_FiresTimersInDueOrder_AndLetsTheirWorkRunBeforeTheNext() => SimulationTest.Run(async sim =>
    {
        var log = new List<string>();
        _ = After(300, "c");
        _ = After(100, "a");
        _ = After(200, "b");
        _ = After(900, "late");

        await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(500));

        Assert.That(log, Is.EqualTo(new[] { "a@100", "a-work@100", "b@200", "b-work@200", "c@300", "c-work@300" }));
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromMilliseconds(500)));

        async Task After(int ms, string name)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(ms), sim.Clock);
            log.Add($"{name}@{sim.Clock.Elapsed.TotalMilliseconds}");
            await Task.Yield();
            log.Add($"{name}-work@{sim.Clock.Elapsed.TotalMilliseconds}");
        }
    });

    [Test]
    public void AdvanceAsync_RunsWhatIsDueExactlyAtTheTarget() => SimulationTest.Run(async sim =>
    {
        var fired = false;
        using var timer = sim.Clock.CreateTimer(_ => fired = true, null, TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(2));

        Assert.That(fired, Is.True);
    });

    [Test]
    public void WaitUntilAsync_ReturnsAtTheFirstIdlePointTheConditionHolds() => SimulationTest.Run(async sim =>
    {
        var ready = false;
        _ = SetLater();

        await sim.Clock.WaitUntilAsync(() => ready, TimeSpan.FromMinutes(1));

        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(7)));

        async Task SetLater()
        {
            await Task.Delay(TimeSpan.FromSeconds(7), sim.Clock);
            ready = true;
        }
    });

    [Test]
    public void WaitUntilAsync_StillFalseAtTheDeadline_ThrowsNamingTheConditionAndReplay() => SimulationTest.Run(async sim =>
    {
        var never = false;
        using var heartbeat = sim.Clock.CreateTimer(_ => { }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        await Assert.ThatAsync(() => sim.Clock.WaitUntilAsync(() => never, TimeSpan.FromSeconds(30)),
            Throws.TypeOf<TimeoutException>().With.Message.Contain("never").And.Message.Contain("P2P_TEST_SEED=" + sim.Seed));

        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(30)));
    });

    [Test]
    public void WaitUntilAsync_NothingLeftThatCouldChangeIt_FailsAtOnce() => SimulationTest.Run(async sim =>
    {
        await Assert.ThatAsync(() => sim.Clock.WaitUntilAsync(() => false, TimeSpan.FromHours(1)),
            Throws.TypeOf<TimeoutException>().With.Message.Contain("no timer is armed"));

        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.Zero));
    });

    [Test]
    public void SetUtcNow_ThroughAFakeTimeProviderReference_FiresWhatFallsDue_AndTheClockReadsTheNewTime() => SimulationTest.Run(async sim =>
    {
        var fired = new List<string>();
        using var early = sim.Clock.CreateTimer(_ => fired.Add("early"), null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        using var late = sim.Clock.CreateTimer(_ => fired.Add("late"), null, TimeSpan.FromSeconds(5), Timeout.InfiniteTimeSpan);
        using var periodic = sim.Clock.CreateTimer(_ => fired.Add("tick"), null, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));
        Microsoft.Extensions.Time.Testing.FakeTimeProvider provider = sim.Clock;

        provider.SetUtcNow(provider.Start + TimeSpan.FromSeconds(3));
        await sim.Clock.RunUntilIdleAsync();

        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(3)));
        // One jump queues what fell due in due order: FIFO runs it so, an exploring schedule may not.
        string[] dueBy3 = ["early", "tick"];
        Assert.That(fired, sim.Strategy == ScheduleStrategy.Fifo ? Is.EqualTo(dueBy3) : Is.EquivalentTo(dueBy3), "what fell due by 3 s; the rest still armed");
        Assert.That(sim.Clock.NextDue, Is.EqualTo(provider.Start + TimeSpan.FromSeconds(4)));

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(2));
        Assert.That(fired.Skip(2), Is.EqualTo(new[] { "tick", "late" }), "an advance visits each due time in turn");
    });

    [Test]
    public void RunUntilIdleAsync_OutsideARun_IsRefused()
    {
        var sim = new SimulationExecutor(seed: 1);

        Assert.Throws<InvalidOperationException>(() => sim.Clock.RunUntilIdleAsync());
    }

    [Test]
    public void SimulationTest_TheSameSeedTwice_GivesTheSameTrace()
    {
        static SimulationExecutor Once() => SimulationTest.Run(async sim =>
        {
            for (var i = 0; i < 20; i++) await Task.Delay(TimeSpan.FromMilliseconds(sim.Random.Next(1, 100)), sim.Clock);
        }, SimulationTest.Options(seed: 77));

        var first = Once();
        var second = Once();

        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash));
    }

    [TestCase("sometimes")]
    [TestCase("2")]
    public void ParseSchedule_Garbage_IsATypedError(string text) =>
        Assert.That(() => SimulationTest.ParseSchedule(text), Throws.ArgumentException.With.Message.Contain("fifo, random or pct"));

    [TestCase(null, ScheduleStrategy.Fifo)]
    [TestCase(" Random ", ScheduleStrategy.Random)]
    [TestCase("pct", ScheduleStrategy.Pct)]
    public void ParseSchedule_Names_PickTheStrategy(string? text, ScheduleStrategy expected) =>
        Assert.That(SimulationTest.ParseSchedule(text), Is.EqualTo(expected));
}
