using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Simulation;

/// <summary>
/// The simulation clock as a <see cref="TimeProvider"/>: what timers, delays, cancellation sources
/// and periodic timers built on it do as the executor moves virtual time.
/// </summary>
[TestFixture]
public sealed class SimulationClockTests
{
    [Test]
    public void Clock_StartsAtTheOptionsStart_WithTimestampsInTicks()
    {
        var start = new DateTimeOffset(2031, 6, 1, 12, 0, 0, TimeSpan.Zero);

        SimulationTest.Run(async sim =>
        {
            var before = sim.Clock.GetTimestamp();
            Assert.That(sim.Clock.GetUtcNow(), Is.EqualTo(start));
            Assert.That(sim.Clock.TimestampFrequency, Is.EqualTo(TimeSpan.TicksPerSecond));

            await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(1500));

            Assert.That(sim.Clock.GetUtcNow(), Is.EqualTo(start.AddMilliseconds(1500)));
            Assert.That(sim.Clock.GetTimestamp() - before, Is.EqualTo(TimeSpan.FromMilliseconds(1500).Ticks));
            Assert.That(sim.Clock.GetElapsedTime(before), Is.EqualTo(sim.Clock.Elapsed));
        }, SimulationTest.Options() with { Start = start });
    }

    [Test]
    public void AdvanceAsync_ByANegativeAmount_IsRefused() => SimulationTest.Run(async sim =>
    {
        await Assert.ThatAsync(() => sim.Clock.AdvanceAsync(TimeSpan.FromTicks(-1)), Throws.TypeOf<ArgumentOutOfRangeException>());

        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.Zero));
    });

    [Test]
    public void OneShotTimer_FiresOnceAtItsDueTime_AndIsThenNoLongerPending() => SimulationTest.Run(async sim =>
    {
        var firedAt = new List<TimeSpan>();
        using var timer = sim.Clock.CreateTimer(_ => firedAt.Add(sim.Clock.Elapsed), null, TimeSpan.FromSeconds(3), TimeSpan.Zero);
        Assert.That(sim.Clock.PendingTimers, Is.EqualTo(1));
        Assert.That(sim.Clock.NextDue, Is.EqualTo(sim.Clock.GetUtcNow() + TimeSpan.FromSeconds(3)));

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(2.999));
        Assert.That(firedAt, Is.Empty, "not before its due time");
        await sim.Clock.AdvanceAsync(TimeSpan.FromMinutes(1));

        Assert.That(firedAt, Is.EqualTo(new[] { TimeSpan.FromSeconds(3) }), "a zero period is a one-shot timer");
        Assert.That(sim.Clock.PendingTimers, Is.Zero);
        Assert.That(sim.Clock.NextDue, Is.Null);
    });

    [Test]
    public void TimerDueAtOnce_RunsAsAStepOfTheQueue_NotInsideCreateTimer() => SimulationTest.Run(async sim =>
    {
        var fired = false;
        using var timer = sim.Clock.CreateTimer(_ => fired = true, null, TimeSpan.Zero, Timeout.InfiniteTimeSpan);
        Assert.That(fired, Is.False, "the callback is queued, not run by the caller of CreateTimer");

        await sim.Clock.RunUntilIdleAsync();

        Assert.That(fired, Is.True);
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.Zero));
    });

    [Test]
    public void TimerWithAnInfiniteDueTime_NeverFires() => SimulationTest.Run(async sim =>
    {
        var fired = false;
        using var timer = sim.Clock.CreateTimer(_ => fired = true, null, Timeout.InfiniteTimeSpan, TimeSpan.FromSeconds(1));

        await sim.Clock.AdvanceAsync(TimeSpan.FromHours(1));

        Assert.That(fired, Is.False);
        Assert.That(sim.Clock.PendingTimers, Is.Zero);
    });

    [Test]
    public void PeriodicTimer_FiresOncePerPeriod_InOrder_AcrossOneLongAdvance() => SimulationTest.Run(async sim =>
    {
        var firedAt = new List<TimeSpan>();
        using var timer = sim.Clock.CreateTimer(_ => firedAt.Add(sim.Clock.Elapsed), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(3.5));

        Assert.That(firedAt, Is.EqualTo(new[] { 1, 2, 3 }.Select(s => TimeSpan.FromSeconds(s))), "each period fires at its own instant");
        Assert.That(sim.Clock.PendingTimers, Is.EqualTo(1), "a periodic timer stays armed (and counts once)");
        Assert.That(sim.Clock.NextDue, Is.EqualTo(sim.Clock.Start + TimeSpan.FromSeconds(4)));
    });

    [Test]
    public void TimerCreatedByACallback_FiresInTheSameAdvance_WhenDueWithinIt() => SimulationTest.Run(async sim =>
    {
        var log = new List<string>();
        ITimer? second = null;
        using var first = sim.Clock.CreateTimer(_ =>
        {
            log.Add($"first@{sim.Clock.Elapsed.TotalSeconds}");
            second = sim.Clock.CreateTimer(_ => log.Add($"second@{sim.Clock.Elapsed.TotalSeconds}"), null, TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);
        }, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(5));
        second?.Dispose();

        Assert.That(log, Is.EqualTo(new[] { "first@1", "second@3" }));
    });

    [Test]
    public void Change_ReschedulesRelativeToNow() => SimulationTest.Run(async sim =>
    {
        var firedAt = new List<TimeSpan>();
        using var timer = sim.Clock.CreateTimer(_ => firedAt.Add(sim.Clock.Elapsed), null, TimeSpan.FromSeconds(10), Timeout.InfiniteTimeSpan);
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(4));

        Assert.That(timer.Change(TimeSpan.FromSeconds(10), Timeout.InfiniteTimeSpan), Is.True);
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(20));

        Assert.That(firedAt, Is.EqualTo(new[] { TimeSpan.FromSeconds(14) }), "not at the original 10 s");
    });

    [Test]
    public void Change_ToAnInfiniteDueTime_DisablesTheTimer() => SimulationTest.Run(async sim =>
    {
        var fired = 0;
        using var timer = sim.Clock.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        await sim.Clock.AdvanceAsync(TimeSpan.FromMinutes(1));

        Assert.That(fired, Is.Zero);
        Assert.That(sim.Clock.PendingTimers, Is.Zero);
    });

    [Test]
    public void Change_FromInsideItsOwnCallback_TakesEffect() => SimulationTest.Run(async sim =>
    {
        var firedAt = new List<TimeSpan>();
        ITimer timer = null!;
        timer = sim.Clock.CreateTimer(_ =>
        {
            firedAt.Add(sim.Clock.Elapsed);
            // From 1 s apart to 5 s apart.
            if (firedAt.Count == 1) timer.Change(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5));
        }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        using (timer)
            await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(12));

        Assert.That(firedAt, Is.EqualTo(new[] { 1, 6, 11 }.Select(s => TimeSpan.FromSeconds(s))));
    });

    [Test]
    public void Change_WithTimesOutOfRange_IsRefused() => SimulationTest.Run(sim =>
    {
        using var timer = sim.Clock.CreateTimer(_ => { }, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);

        Assert.That(() => timer.Change(TimeSpan.FromMilliseconds(-2), Timeout.InfiniteTimeSpan), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => timer.Change(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(-2)), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => sim.Clock.CreateTimer(_ => { }, null, TimeSpan.FromDays(60), Timeout.InfiniteTimeSpan), Throws.InstanceOf<ArgumentOutOfRangeException>());
        return Task.CompletedTask;
    });

    [Test]
    public void Dispose_StopsTheTimer_AndChangeThenReturnsFalse() => SimulationTest.Run(async sim =>
    {
        var fired = 0;
        var timer = sim.Clock.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(1));

        timer.Dispose();
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(10));

        Assert.That(fired, Is.EqualTo(1));
        Assert.That(timer.Change(TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan), Is.False);
        Assert.That(sim.Clock.PendingTimers, Is.Zero);
    });

    [Test]
    public void DisposeAsync_StopsTheTimer() => SimulationTest.Run(async sim =>
    {
        var fired = false;
        var timer = sim.Clock.CreateTimer(_ => fired = true, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);

        await timer.DisposeAsync();
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(2));

        Assert.That(fired, Is.False);
    });

    [Test]
    public void DisposingALaterTimer_FromAnEarlierCallbackAtTheSameInstant_PreventsIt() => SimulationTest.Run(async sim =>
    {
        // Timers due at one instant run in creation order under FIFO; an exploring schedule may run
        // either first. Whichever runs first disposes the other, which then must not run.
        var log = new List<string>();
        ITimer earlier = null!, later = null!;
        earlier = sim.Clock.CreateTimer(_ =>
        {
            log.Add("earlier");
            later.Dispose();
        }, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        later = sim.Clock.CreateTimer(_ =>
        {
            log.Add("later");
            earlier.Dispose();
        }, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(2));

        Assert.That(log, Has.Count.EqualTo(1), "both came due together, but the first stopped the second before it ran");
        if (sim.Strategy == ScheduleStrategy.Fifo) Assert.That(log, Is.EqualTo(new[] { "earlier" }));
        earlier.Dispose();
    });

    [Test]
    public void TimerCallback_RunsInTheExecutionContextOfItsCreator() => SimulationTest.Run(async sim =>
    {
        var local = new AsyncLocal<string>();
        string? seen = null;
        local.Value = "creator";
        using var timer = sim.Clock.CreateTimer(_ => seen = local.Value, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        local.Value = "advancer";

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(1));

        Assert.That(seen, Is.EqualTo("creator"));
    });

    [Test]
    public void TaskDelay_CompletesAtItsDueTime_AndNotBefore() => SimulationTest.Run(async sim =>
    {
        var delay = Task.Delay(TimeSpan.FromSeconds(5), sim.Clock);

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(4.999));
        Assert.That(delay.IsCompleted, Is.False);
        await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(1));

        Assert.That(delay.IsCompletedSuccessfully, Is.True);
    });

    [Test]
    public void TaskDelay_CancelledByItsToken_EndsWithoutMovingTheClock() => SimulationTest.Run(async sim =>
    {
        using var cancel = new CancellationTokenSource();
        var delay = Task.Delay(TimeSpan.FromHours(1), sim.Clock, cancel.Token);

        cancel.Cancel();

        await Assert.ThatAsync(() => delay, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.Zero));
        Assert.That(sim.Clock.PendingTimers, Is.Zero, "the cancelled delay's timer is gone");
    });

    [Test]
    public void CancellationTokenSource_OnTheClock_CancelsAtItsDelay_AndCancelAfterReschedules() => SimulationTest.Run(async sim =>
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10), sim.Clock);
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(5));

        cts.CancelAfter(TimeSpan.FromSeconds(10));
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(9));
        Assert.That(cts.IsCancellationRequested, Is.False, "rescheduled from 10 s to 15 s");
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(1));

        Assert.That(cts.IsCancellationRequested, Is.True);
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(15)));
    });

    [Test]
    public void WaitAsync_WithATimeoutOnTheClock_TimesOutAtTheVirtualTimeout() => SimulationTest.Run(async sim =>
    {
        var slow = Task.Delay(TimeSpan.FromMinutes(1), sim.Clock);

        var waiting = slow.WaitAsync(TimeSpan.FromSeconds(3), sim.Clock);

        await Assert.ThatAsync(() => waiting, Throws.TypeOf<TimeoutException>());
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(3)));
    });

    [Test]
    public void WaitAsync_WithATimeoutOnTheClock_CompletesWhenTheTaskFinishesFirst() => SimulationTest.Run(async sim =>
    {
        var quick = Task.Delay(TimeSpan.FromSeconds(1), sim.Clock);

        await quick.WaitAsync(TimeSpan.FromSeconds(3), sim.Clock);

        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(1)));
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(sim.Clock.PendingTimers, Is.Zero, "the timeout's timer was released");
    });

    [Test]
    public void PeriodicTimer_OnTheClock_TicksEachPeriod_AndStopsWhenDisposed() => SimulationTest.Run(async sim =>
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), sim.Clock);

        var tick = timer.WaitForNextTickAsync();
        await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(999));
        Assert.That(tick.IsCompleted, Is.False);
        await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(1));
        Assert.That(await tick, Is.True);

        Assert.That(await timer.WaitForNextTickAsync(), Is.True);
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(2)), "the executor moved the clock to the next tick on its own");

        timer.Dispose();
        Assert.That(await timer.WaitForNextTickAsync(), Is.False);
        Assert.That(sim.Clock.PendingTimers, Is.Zero);
    });
}
