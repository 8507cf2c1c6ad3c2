using P2PInference.TestKit.Time;

namespace P2PInference.Tests.Unit.Time;

/// <summary>The framework's time-based APIs driven by <see cref="FakeTimeProvider"/>, and the async advancing helpers.</summary>
[TestFixture]
public sealed class FakeTimeProviderTaskTests
{
    private static readonly DateTimeOffset Millennium = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Test]
    public void TaskDelay_Completes_OnlyWhenAdvancedToItsDueTime()
    {
        var tp = new FakeTimeProvider();

        var delay = Task.Delay(TimeSpan.FromSeconds(1), tp);
        tp.Advance(TimeSpan.FromMilliseconds(999));
        Assert.That(delay.IsCompleted, Is.False);

        tp.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(delay.IsCompletedSuccessfully, Is.True);
    }

    [Test]
    public void TaskDelay_IsCanceled_ByItsToken_WithoutAdvancing()
    {
        var tp = new FakeTimeProvider();
        using var cts = new CancellationTokenSource();

        var delay = Task.Delay(TimeSpan.FromSeconds(1), tp, cts.Token);
        cts.Cancel();

        Assert.That(delay.IsCanceled, Is.True);
        Assert.That(tp.PendingTimerCount, Is.Zero, "the delay's timer is disposed on cancellation");
    }

    [Test]
    public void CancellationTokenSource_Cancels_WhenAdvancedToItsDelay()
    {
        var tp = new FakeTimeProvider();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5), tp);

        tp.Advance(TimeSpan.FromMilliseconds(4999));
        Assert.That(cts.IsCancellationRequested, Is.False);

        tp.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(cts.IsCancellationRequested, Is.True);
    }

    [Test]
    public void CancelAfter_OnProviderSource_Reschedules()
    {
        var tp = new FakeTimeProvider();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5), tp);
        tp.Advance(TimeSpan.FromSeconds(4));

        cts.CancelAfter(TimeSpan.FromSeconds(5));
        tp.Advance(TimeSpan.FromSeconds(4));
        Assert.That(cts.IsCancellationRequested, Is.False);

        tp.Advance(TimeSpan.FromSeconds(1));
        Assert.That(cts.IsCancellationRequested, Is.True);
    }

    [Test]
    [CancelAfter(10000)]
    public async Task PeriodicTimer_Ticks_EachPeriod(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), tp);

        var tick = timer.WaitForNextTickAsync(cancellationToken);
        tp.Advance(TimeSpan.FromMilliseconds(999));
        Assert.That(tick.IsCompleted, Is.False);
        tp.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(await tick, Is.True);

        tick = timer.WaitForNextTickAsync(cancellationToken);
        Assert.That(tick.IsCompleted, Is.False);
        tp.Advance(TimeSpan.FromSeconds(1));
        Assert.That(await tick, Is.True);

        timer.Dispose();
        Assert.That(await timer.WaitForNextTickAsync(cancellationToken), Is.False);
        Assert.That(tp.PendingTimerCount, Is.Zero);
    }

    [Test]
    public void WaitAsync_TimesOut_WhenAdvancedPastTimeout()
    {
        var tp = new FakeTimeProvider();
        var never = new TaskCompletionSource();

        var wait = never.Task.WaitAsync(TimeSpan.FromSeconds(3), tp);
        tp.Advance(TimeSpan.FromSeconds(2));
        Assert.That(wait.IsCompleted, Is.False);

        tp.Advance(TimeSpan.FromSeconds(1));
        Assert.That(wait.IsFaulted, Is.True);
        Assert.That(wait.Exception!.InnerException, Is.InstanceOf<TimeoutException>());
    }

    [Test]
    public void WaitAsync_Completes_WhenTaskFinishesBeforeTimeout()
    {
        var tp = new FakeTimeProvider();
        var source = new TaskCompletionSource();

        var wait = source.Task.WaitAsync(TimeSpan.FromSeconds(3), tp);
        source.SetResult();

        Assert.That(wait.IsCompletedSuccessfully, Is.True);
        Assert.That(tp.PendingTimerCount, Is.Zero);
    }

    [Test]
    // Ten steps, each allowed the idle wait's real-time budget (IdleTimeout, 2 s) when leftover pool
    // work keeps the heuristic from seeing quiet: 10 s was less than the worst case it permits.
    [CancelAfter(30000)]
    public async Task AdvanceAsync_RunsChainOfDelays(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        var loop = DelayLoop(tp, 10, seen, hop: false);

        await tp.AdvanceAsync(TimeSpan.FromSeconds(10), cancellationToken);

        Assert.That(loop.IsCompletedSuccessfully, Is.True);
        Assert.That(seen, Is.EqualTo(Enumerable.Range(1, 10).Select(s => Millennium.AddSeconds(s))));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(10)));
    }

    [Test]
    // Ten steps, each allowed the idle wait's real-time budget (IdleTimeout, 2 s) when leftover pool
    // work keeps the heuristic from seeing quiet: 10 s was less than the worst case it permits.
    [CancelAfter(30000)]
    public async Task AdvanceAsync_RunsChainOfDelays_WhenContinuationsHopThroughThreadPool(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        var loop = Task.Run(() => DelayLoop(tp, 10, seen, hop: true), cancellationToken);

        await tp.AdvanceAsync(TimeSpan.FromSeconds(10), cancellationToken);

        Assert.That(loop.IsCompletedSuccessfully, Is.True);
        Assert.That(seen, Is.EqualTo(Enumerable.Range(1, 10).Select(s => Millennium.AddSeconds(s))));
    }

    [Test]
    [CancelAfter(10000)]
    public async Task AdvanceAsync_WaitsForContinuationsBusyOnThreadPool(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        var loop = Task.Run(async () =>
        {
            for (var i = 0; i < 5; i++)
            {
                await Task.Delay(TimeSpan.FromSeconds(1), tp, cancellationToken);
                seen.Add(tp.GetUtcNow());
                await Task.Run(() => Compute(3_000), cancellationToken);
            }
        }, cancellationToken);

        await tp.AdvanceAsync(TimeSpan.FromSeconds(5), cancellationToken);

        Assert.That(seen, Is.EqualTo(Enumerable.Range(1, 5).Select(s => Millennium.AddSeconds(s))));
        await loop;
    }

    [Test]
    [CancelAfter(10000)]
    public async Task AdvanceAsync_StopsBetweenSteps_WhenCanceled(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var fired = 0;
        using var timer = tp.CreateTimer(_ =>
        {
            if (++fired == 3)
            {
                cts.Cancel();
            }
        }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        Assert.CatchAsync<OperationCanceledException>(() => tp.AdvanceAsync(TimeSpan.FromSeconds(10), cts.Token));

        Assert.That(fired, Is.EqualTo(3));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(3)));
        await tp.AdvanceAsync(TimeSpan.FromSeconds(7), cancellationToken);
        Assert.That(fired, Is.EqualTo(10));
    }

    [Test]
    [CancelAfter(10000)]
    public async Task AdvanceAsync_StopsAtTarget_LeavingLaterTimersPending(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        var loop = DelayLoop(tp, 10, seen, hop: false);

        await tp.AdvanceAsync(TimeSpan.FromSeconds(3.5), cancellationToken);

        Assert.That(seen, Has.Count.EqualTo(3));
        Assert.That(loop.IsCompleted, Is.False);
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(3.5)));
        Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddSeconds(4)));

        await tp.AdvanceAsync(TimeSpan.FromSeconds(6.5), cancellationToken);
        Assert.That(loop.IsCompletedSuccessfully, Is.True);
    }

    [Test]
    [CancelAfter(10000)]
    public async Task AdvanceAsync_InJumpMode_MovesOneLinkOfAChain(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider { AdvanceMode = TimeAdvanceMode.Jump };
        var seen = new List<DateTimeOffset>();
        var loop = DelayLoop(tp, 10, seen, hop: false);

        await tp.AdvanceAsync(TimeSpan.FromSeconds(10), cancellationToken);

        Assert.That(seen, Is.EqualTo(new[] { Millennium.AddSeconds(10) }));
        Assert.That(loop.IsCompleted, Is.False);
        Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddSeconds(11)));
    }

    [Test]
    public void Advance_InStepMode_RunsChainWhoseContinuationsRunInline()
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        var loop = DelayLoop(tp, 10, seen, hop: false);

        tp.Advance(TimeSpan.FromSeconds(10));

        Assert.That(loop.IsCompletedSuccessfully, Is.True);
        Assert.That(seen, Has.Count.EqualTo(10));
    }

    [Test]
    [CancelAfter(10000)]
    public async Task AdvanceAsync_RunsPeriodicTimerConsumer_OncePerPeriod(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        var ticks = 0;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), tp);
        var consumer = Task.Run(async () =>
        {
            while (ticks < 5 && await timer.WaitForNextTickAsync(cancellationToken))
            {
                ticks++;
                await Task.Yield();
            }
        }, cancellationToken);

        await tp.AdvanceAsync(TimeSpan.FromSeconds(5), cancellationToken);

        Assert.That(ticks, Is.EqualTo(5));
        await consumer;
    }

    [Test]
    [CancelAfter(10000)]
    public async Task AdvanceAsync_Throws_WhenDeltaIsNegative(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();

        Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => tp.AdvanceAsync(TimeSpan.FromTicks(-1), cancellationToken));
        await tp.RunUntilIdleAsync(cancellationToken);
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
    }

    [Test]
    public void AdvanceAsync_Throws_WhenCanceled()
    {
        var tp = new FakeTimeProvider();
        using var cts = new CancellationTokenSource();
        cts.Cancel();

        Assert.CatchAsync<OperationCanceledException>(() => tp.AdvanceAsync(TimeSpan.FromSeconds(1), cts.Token));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
    }

    [Test]
    [CancelAfter(10000)]
    public async Task RunUntilIdleAsync_LetsPendingWorkScheduleTimers_WithoutMovingClock(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        var started = Task.Run(async () =>
        {
            await Task.Yield();
            await Task.Yield();
            await Task.Delay(TimeSpan.FromSeconds(1), tp, cancellationToken);
        }, cancellationToken);

        await tp.RunUntilIdleAsync(cancellationToken);

        Assert.That(tp.PendingTimerCount, Is.EqualTo(1));
        Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddSeconds(1)));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
        tp.Advance(TimeSpan.FromSeconds(1));
        await started;
    }

    [Test]
    [CancelAfter(10000)]
    public async Task RunUntilIdleAsync_Returns_WhenNothingIsPending(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();

        await tp.RunUntilIdleAsync(cancellationToken);

        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
    }

    [Test]
    [CancelAfter(10000)]
    public async Task RunUntilIdleAsync_WaitsForBusyWorkThatThenSchedulesTimer(CancellationToken cancellationToken)
    {
        var tp = new FakeTimeProvider();
        var work = Task.Run(async () =>
        {
            Compute(10_000);
            await Task.Delay(TimeSpan.FromSeconds(2), tp, cancellationToken);
        }, cancellationToken);

        await tp.RunUntilIdleAsync(cancellationToken);

        Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddSeconds(2)));
        await tp.AdvanceAsync(TimeSpan.FromSeconds(2), cancellationToken);
        Assert.That(work.IsCompletedSuccessfully, Is.True);
    }

    [Test]
    public void IdleTimeout_Throws_WhenNegative()
    {
        var tp = new FakeTimeProvider();

        Assert.That(tp.IdleTimeout, Is.GreaterThan(TimeSpan.Zero));
        Assert.Throws<ArgumentOutOfRangeException>(() => tp.IdleTimeout = TimeSpan.FromTicks(-1));
    }

    // CPU work with no clock in it: stands in for a continuation that takes a while.
    private static int Compute(int rounds)
    {
        var hash = new byte[32];
        for (var i = 0; i < rounds; i++)
        {
            hash = System.Security.Cryptography.SHA256.HashData(hash);
        }

        return hash[0];
    }

    private static async Task DelayLoop(FakeTimeProvider tp, int count, List<DateTimeOffset> seen, bool hop)
    {
        for (var i = 0; i < count; i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), tp);
            lock (seen)
            {
                seen.Add(tp.GetUtcNow());
            }

            if (hop)
            {
                await Task.Yield();
                await Task.Run(() => { });
            }
        }
    }
}
