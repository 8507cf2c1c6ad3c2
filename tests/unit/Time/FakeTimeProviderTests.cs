using System.Runtime.CompilerServices;
using P2PInference.TestKit;
using P2PInference.TestKit.Time;

namespace P2PInference.Tests.Unit.Time;

[TestFixture]
public sealed class FakeTimeProviderTests
{
    private static readonly DateTimeOffset Millennium = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Test]
    public void Constructor_StartsAtMillenniumUtc_WhenNoStartGiven()
    {
        var tp = new FakeTimeProvider();

        Assert.Multiple(() =>
        {
            Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
            Assert.That(tp.GetUtcNow().Offset, Is.EqualTo(TimeSpan.Zero));
            Assert.That(tp.Start, Is.EqualTo(Millennium));
            Assert.That(tp.LocalTimeZone, Is.EqualTo(TimeZoneInfo.Utc));
            Assert.That(tp.AutoAdvanceAmount, Is.EqualTo(TimeSpan.Zero));
            Assert.That(tp.AdvanceMode, Is.EqualTo(TimeAdvanceMode.Step));
            Assert.That(tp.PendingTimerCount, Is.Zero);
            Assert.That(tp.NextDueTime, Is.Null);
        });
    }

    [Test]
    public void Constructor_StartsAtGivenInstant()
    {
        var start = new DateTimeOffset(2024, 5, 6, 7, 8, 9, TimeSpan.FromHours(2));

        var tp = new FakeTimeProvider(start);

        Assert.Multiple(() =>
        {
            Assert.That(tp.Start, Is.EqualTo(start));
            Assert.That(tp.GetUtcNow(), Is.EqualTo(start));
            Assert.That(tp.GetUtcNow().Offset, Is.EqualTo(TimeSpan.Zero));
        });
    }

    [Test]
    public void Advance_MovesWallClockAndTimestamps()
    {
        var tp = new FakeTimeProvider();
        var before = tp.GetTimestamp();

        tp.Advance(TimeSpan.FromSeconds(5));
        tp.Advance(TimeSpan.FromMilliseconds(250));

        Assert.Multiple(() =>
        {
            Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(5.25)));
            Assert.That(tp.GetElapsedTime(before), Is.EqualTo(TimeSpan.FromMilliseconds(5250)));
            Assert.That(tp.GetElapsedTime(before, tp.GetTimestamp()), Is.EqualTo(TimeSpan.FromMilliseconds(5250)));
        });
    }

    [Test]
    public void Advance_ByZero_LeavesClockUnchanged()
    {
        var tp = new FakeTimeProvider();

        tp.Advance(TimeSpan.Zero);

        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
    }

    [Test]
    public void Advance_Throws_WhenDeltaIsNegative()
    {
        var tp = new FakeTimeProvider();

        Assert.Throws<ArgumentOutOfRangeException>(() => tp.Advance(TimeSpan.FromTicks(-1)));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
    }

    [Test]
    public void SetUtcNow_MovesClockForward()
    {
        var tp = new FakeTimeProvider();
        var before = tp.GetTimestamp();
        var later = Millennium.AddHours(3);

        tp.SetUtcNow(later);
        tp.SetUtcNow(later);

        Assert.Multiple(() =>
        {
            Assert.That(tp.GetUtcNow(), Is.EqualTo(later));
            Assert.That(tp.GetElapsedTime(before), Is.EqualTo(TimeSpan.FromHours(3)));
        });
    }

    [Test]
    public void SetUtcNow_Throws_WhenGoingBackwards()
    {
        var tp = new FakeTimeProvider();
        tp.Advance(TimeSpan.FromSeconds(10));

        Assert.Throws<ArgumentOutOfRangeException>(() => tp.SetUtcNow(Millennium.AddSeconds(9)));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(10)));
    }

    [Test]
    public void SetUtcNow_FiresTimersThatComeDue_AtTheirDueTimes()
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        using var a = tp.CreateTimer(_ => seen.Add(tp.GetUtcNow()), null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        using var b = tp.CreateTimer(_ => seen.Add(tp.GetUtcNow()), null, TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);
        using var c = tp.CreateTimer(_ => seen.Add(tp.GetUtcNow()), null, TimeSpan.FromSeconds(4), Timeout.InfiniteTimeSpan);

        tp.SetUtcNow(Millennium.AddSeconds(3));

        Assert.Multiple(() =>
        {
            Assert.That(seen, Is.EqualTo(new[] { Millennium.AddSeconds(1), Millennium.AddSeconds(2) }));
            Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(3)));
            Assert.That(tp.PendingTimerCount, Is.EqualTo(1));
        });
    }

    [Test]
    public void AdjustTime_ChangesWallClock_WithoutFiringOrMovingTimers()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;
        using var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(10), Timeout.InfiniteTimeSpan);
        var timestamp = tp.GetTimestamp();

        tp.AdjustTime(Millennium.AddHours(1));

        Assert.Multiple(() =>
        {
            Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddHours(1)));
            Assert.That(fired, Is.Zero);
            Assert.That(tp.GetTimestamp(), Is.EqualTo(timestamp));
            Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddHours(1).AddSeconds(10)));
        });

        tp.Advance(TimeSpan.FromSeconds(9));
        Assert.That(fired, Is.Zero);
        tp.Advance(TimeSpan.FromSeconds(1));
        Assert.Multiple(() =>
        {
            Assert.That(fired, Is.EqualTo(1));
            Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddHours(1).AddSeconds(10)));
            Assert.That(tp.GetElapsedTime(timestamp), Is.EqualTo(TimeSpan.FromSeconds(10)));
        });
    }

    [Test]
    public void AdjustTime_CanMoveWallClockBackwards()
    {
        var tp = new FakeTimeProvider();
        tp.Advance(TimeSpan.FromMinutes(5));

        tp.AdjustTime(Millennium.AddMinutes(-5));

        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddMinutes(-5)));
        Assert.Throws<ArgumentOutOfRangeException>(() => tp.SetUtcNow(Millennium.AddMinutes(-6)));
        tp.SetUtcNow(Millennium);
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
    }

    [Test]
    public void AutoAdvanceAmount_MovesClockAfterEachRead()
    {
        var tp = new FakeTimeProvider { AutoAdvanceAmount = TimeSpan.FromSeconds(1) };

        var first = tp.GetUtcNow();
        var second = tp.GetUtcNow();
        var third = tp.GetUtcNow();

        Assert.Multiple(() =>
        {
            Assert.That(first, Is.EqualTo(Millennium));
            Assert.That(second, Is.EqualTo(Millennium.AddSeconds(1)));
            Assert.That(third, Is.EqualTo(Millennium.AddSeconds(2)));
            Assert.That(tp.GetTimestamp() - tp.Start.UtcTicks, Is.EqualTo(TimeSpan.FromSeconds(3).Ticks), "timestamps follow the clock");
        });
    }

    [Test]
    public void AutoAdvanceAmount_FiresTimersThatComeDue()
    {
        var tp = new FakeTimeProvider { AutoAdvanceAmount = TimeSpan.FromSeconds(1) };
        var fired = 0;
        using var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);

        _ = tp.GetUtcNow();
        Assert.That(fired, Is.Zero);
        _ = tp.GetUtcNow();
        Assert.That(fired, Is.EqualTo(1));
    }

    [Test]
    public void AutoAdvanceAmount_Throws_WhenNegative()
    {
        var tp = new FakeTimeProvider();

        Assert.Throws<ArgumentOutOfRangeException>(() => tp.AutoAdvanceAmount = TimeSpan.FromTicks(-1));
    }

    [Test]
    public void Timestamps_AreInTicks_AndConvertExactly()
    {
        var tp = new FakeTimeProvider();
        var start = tp.GetTimestamp();

        tp.Advance(TimeSpan.FromTicks(12_345_678_901));

        Assert.Multiple(() =>
        {
            Assert.That(tp.TimestampFrequency, Is.EqualTo(TimeSpan.TicksPerSecond));
            Assert.That(tp.GetTimestamp() - start, Is.EqualTo(12_345_678_901));
            Assert.That(tp.GetElapsedTime(start), Is.EqualTo(TimeSpan.FromTicks(12_345_678_901)));
        });
    }

    [Test]
    public void SetLocalTimeZone_ChangesLocalTimeZone()
    {
        var tp = new FakeTimeProvider();
        var zone = TimeZoneInfo.CreateCustomTimeZone("Test+3", TimeSpan.FromHours(3), "Test+3", "Test+3");

        tp.SetLocalTimeZone(zone);

        Assert.Multiple(() =>
        {
            Assert.That(tp.LocalTimeZone, Is.SameAs(zone));
            Assert.That(tp.GetLocalNow().Offset, Is.EqualTo(TimeSpan.FromHours(3)));
            Assert.That(tp.GetLocalNow(), Is.EqualTo(Millennium));
        });
        Assert.Throws<ArgumentNullException>(() => tp.SetLocalTimeZone(null!));
    }

    [Test]
    public void ToString_ShowsCurrentTime()
    {
        var tp = new FakeTimeProvider();
        tp.Advance(TimeSpan.FromMilliseconds(1500));

        Assert.That(tp.ToString(), Is.EqualTo("2000-01-01T00:00:01.500"));
    }

    [Test]
    public void OneShotTimer_FiresOnce_WhenClockReachesDueTime()
    {
        var tp = new FakeTimeProvider();
        var states = new List<object?>();
        using var timer = tp.CreateTimer(states.Add, "state", TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);

        tp.Advance(TimeSpan.FromMilliseconds(999));
        Assert.That(states, Is.Empty);
        Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddSeconds(1)));

        tp.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(states, Is.EqualTo(new object?[] { "state" }));

        tp.Advance(TimeSpan.FromHours(1));
        Assert.Multiple(() =>
        {
            Assert.That(states, Has.Count.EqualTo(1));
            Assert.That(tp.PendingTimerCount, Is.Zero);
            Assert.That(tp.NextDueTime, Is.Null);
        });
    }

    [Test]
    public void OneShotTimer_TreatsZeroPeriodAsOneShot()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;
        using var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), TimeSpan.Zero);

        tp.Advance(TimeSpan.FromSeconds(10));

        Assert.That(fired, Is.EqualTo(1));
    }

    [Test]
    public void Timer_FiresInsideCreateTimer_WhenDueTimeIsZero()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;

        using var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.Zero, Timeout.InfiniteTimeSpan);

        Assert.That(fired, Is.EqualTo(1));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium));
    }

    [Test]
    public void Timer_NeverFires_WhenDueTimeIsInfinite()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;

        using var timer = tp.CreateTimer(_ => fired++, null, Timeout.InfiniteTimeSpan, TimeSpan.FromSeconds(1));
        tp.Advance(TimeSpan.FromDays(1));

        Assert.Multiple(() =>
        {
            Assert.That(fired, Is.Zero);
            Assert.That(tp.PendingTimerCount, Is.Zero);
        });
    }

    [Test]
    public void PeriodicTimer_FiresEachPeriod()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;
        using var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1));

        tp.Advance(TimeSpan.FromSeconds(1));
        Assert.That(fired, Is.Zero);
        tp.Advance(TimeSpan.FromSeconds(1));
        Assert.That(fired, Is.EqualTo(1));
        tp.Advance(TimeSpan.FromSeconds(1));
        Assert.That(fired, Is.EqualTo(2));
        Assert.That(tp.PendingTimerCount, Is.EqualTo(1));
    }

    [Test]
    public void PeriodicTimer_FiresOncePerMissedPeriod_InOrder_WhenAdvancedOverSeveral()
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        using var timer = tp.CreateTimer(_ => seen.Add(tp.GetUtcNow()), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        tp.Advance(TimeSpan.FromSeconds(5.5));

        Assert.Multiple(() =>
        {
            Assert.That(seen, Is.EqualTo(Enumerable.Range(1, 5).Select(s => Millennium.AddSeconds(s))));
            Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(5.5)));
            Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddSeconds(6)));
        });
    }

    [Test]
    public void Timers_FireInDueOrder_WithClockAtEachDueTime()
    {
        var tp = new FakeTimeProvider();
        var seen = new List<(string Name, DateTimeOffset At)>();
        TimerCallback record = s => seen.Add(((string)s!, tp.GetUtcNow()));
        using var c = tp.CreateTimer(record, "c", TimeSpan.FromSeconds(3), Timeout.InfiniteTimeSpan);
        using var a = tp.CreateTimer(record, "a", TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        using var b1 = tp.CreateTimer(record, "b1", TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);
        using var b2 = tp.CreateTimer(record, "b2", TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);

        tp.Advance(TimeSpan.FromSeconds(10));

        Assert.Multiple(() =>
        {
            Assert.That(seen, Is.EqualTo(new[]
            {
                ("a", Millennium.AddSeconds(1)),
                ("b1", Millennium.AddSeconds(2)),
                ("b2", Millennium.AddSeconds(2)),
                ("c", Millennium.AddSeconds(3)),
            }));
            Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(10)));
        });
    }

    [Test]
    public void Timer_CreatedByCallback_FiresInSameAdvance_WhenDueWithinIt()
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        var timers = new List<ITimer>();
        void Chain(object? _)
        {
            seen.Add(tp.GetUtcNow());
            timers.Add(tp.CreateTimer(Chain, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan));
        }

        timers.Add(tp.CreateTimer(Chain, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan));
        tp.Advance(TimeSpan.FromSeconds(3.5));

        Assert.That(seen, Is.EqualTo(new[] { Millennium.AddSeconds(1), Millennium.AddSeconds(2), Millennium.AddSeconds(3) }));
        Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddSeconds(4)));
        timers.ForEach(t => t.Dispose());
    }

    [Test]
    public void JumpMode_FiresDueTimersInOrder_WithClockAlreadyAtTarget()
    {
        var tp = new FakeTimeProvider { AdvanceMode = TimeAdvanceMode.Jump };
        var seen = new List<(string Name, DateTimeOffset At)>();
        TimerCallback record = s => seen.Add(((string)s!, tp.GetUtcNow()));
        using var periodic = tp.CreateTimer(record, "p", TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2));
        using var once = tp.CreateTimer(record, "o", TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);

        tp.Advance(TimeSpan.FromSeconds(6));

        var at = Millennium.AddSeconds(6);
        Assert.That(seen, Is.EqualTo(new[] { ("p", at), ("o", at), ("p", at), ("p", at) }));
    }

    [Test]
    public void JumpMode_TimerCreatedByCallback_WaitsForNextAdvance()
    {
        var tp = new FakeTimeProvider { AdvanceMode = TimeAdvanceMode.Jump };
        var seen = new List<DateTimeOffset>();
        var timers = new List<ITimer>();
        void Chain(object? _)
        {
            seen.Add(tp.GetUtcNow());
            timers.Add(tp.CreateTimer(Chain, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan));
        }

        timers.Add(tp.CreateTimer(Chain, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan));
        tp.Advance(TimeSpan.FromSeconds(3.5));

        Assert.That(seen, Is.EqualTo(new[] { Millennium.AddSeconds(3.5) }));
        Assert.That(tp.NextDueTime, Is.EqualTo(Millennium.AddSeconds(4.5)));
        timers.ForEach(t => t.Dispose());
    }

    [Test]
    public void AdvanceMode_Throws_WhenValueIsUndefined()
    {
        var tp = new FakeTimeProvider();

        Assert.Throws<ArgumentOutOfRangeException>(() => tp.AdvanceMode = (TimeAdvanceMode)7);
    }

    [Test]
    public void Change_ReschedulesRelativeToNow()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;
        using var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        tp.Advance(TimeSpan.FromMilliseconds(500));

        Assert.That(timer.Change(TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1)), Is.True);
        tp.Advance(TimeSpan.FromMilliseconds(1999));
        Assert.That(fired, Is.Zero);
        tp.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(fired, Is.EqualTo(1));
        tp.Advance(TimeSpan.FromSeconds(1));
        Assert.That(fired, Is.EqualTo(2));
    }

    [Test]
    public void Change_DisablesTimer_WhenDueTimeIsInfinite()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;
        using var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        Assert.That(timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan), Is.True);
        tp.Advance(TimeSpan.FromSeconds(10));

        Assert.That(fired, Is.Zero);
        Assert.That(tp.PendingTimerCount, Is.Zero);
    }

    [Test]
    public void Change_FromInsideOwnCallback_TakesEffect()
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        ITimer? timer = null;
        timer = tp.CreateTimer(_ =>
        {
            seen.Add(tp.GetUtcNow());
            if (seen.Count == 1)
            {
                timer!.Change(TimeSpan.FromSeconds(5), Timeout.InfiniteTimeSpan);
            }
        }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

        tp.Advance(TimeSpan.FromSeconds(20));

        Assert.That(seen, Is.EqualTo(new[] { Millennium.AddSeconds(1), Millennium.AddSeconds(6) }));
        timer.Dispose();
    }

    [Test]
    public void Change_Throws_WhenTimesAreOutOfRange()
    {
        var tp = new FakeTimeProvider();
        using var timer = tp.CreateTimer(_ => { }, null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);

        Assert.Multiple(() =>
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => timer.Change(TimeSpan.FromMilliseconds(-2), Timeout.InfiniteTimeSpan));
            Assert.Throws<ArgumentOutOfRangeException>(() => timer.Change(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(-2)));
            Assert.Throws<ArgumentOutOfRangeException>(() => timer.Change(TimeSpan.FromMilliseconds(0xffffffffL), Timeout.InfiniteTimeSpan));
            Assert.Throws<ArgumentOutOfRangeException>(() => tp.CreateTimer(_ => { }, null, TimeSpan.FromDays(-1), Timeout.InfiniteTimeSpan));
            Assert.Throws<ArgumentNullException>(() => tp.CreateTimer(null!, null, TimeSpan.Zero, Timeout.InfiniteTimeSpan));
        });
    }

    [Test]
    public void Dispose_StopsTimer_AndChangeThenReturnsFalse()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;
        var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        tp.Advance(TimeSpan.FromSeconds(1));

        timer.Dispose();
        timer.Dispose();
        tp.Advance(TimeSpan.FromSeconds(10));

        Assert.Multiple(() =>
        {
            Assert.That(fired, Is.EqualTo(1));
            Assert.That(tp.PendingTimerCount, Is.Zero);
            Assert.That(timer.Change(TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan), Is.False);
        });
    }

    [Test]
    public async Task DisposeAsync_StopsTimer()
    {
        var tp = new FakeTimeProvider();
        var fired = 0;
        var timer = tp.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);

        await timer.DisposeAsync();
        tp.Advance(TimeSpan.FromSeconds(10));

        Assert.That(fired, Is.Zero);
    }

    [Test]
    public void Dispose_OfLaterTimer_FromEarlierCallbackAtSameInstant_PreventsIt()
    {
        var tp = new FakeTimeProvider();
        var fired = new List<string>();
        ITimer? second = null;
        using var first = tp.CreateTimer(_ => { fired.Add("first"); second!.Dispose(); }, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        second = tp.CreateTimer(_ => fired.Add("second"), null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);

        tp.Advance(TimeSpan.FromSeconds(1));

        Assert.That(fired, Is.EqualTo(new[] { "first" }));
    }

    [Test]
    public void Timer_StaysScheduled_WhenNobodyHoldsIt()
    {
        var tp = new FakeTimeProvider();
        var fired = new StrongBox<int>();
        CreateAndDrop(tp, fired);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        tp.Advance(TimeSpan.FromSeconds(1));

        Assert.That(fired.Value, Is.EqualTo(1));

        static void CreateAndDrop(FakeTimeProvider tp, StrongBox<int> fired) =>
            _ = tp.CreateTimer(_ => fired.Value++, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
    }

    [Test]
    public void Timer_CallbackRunsInCapturedExecutionContext()
    {
        var tp = new FakeTimeProvider();
        var local = new AsyncLocal<string>();
        string? seen = null;
        local.Value = "creator";
        using var timer = tp.CreateTimer(_ => seen = local.Value, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        local.Value = "advancer";

        tp.Advance(TimeSpan.FromSeconds(1));

        Assert.That(seen, Is.EqualTo("creator"));
    }

    [Test]
    public void CallbackException_PropagatesToAdvancer_AndTheNextMoveFinishesTheAdvance()
    {
        var tp = new FakeTimeProvider();
        var fired = new List<string>();
        using var bad = tp.CreateTimer(_ => throw new InvalidOperationException("boom"), null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        using var good = tp.CreateTimer(_ => fired.Add("good"), null, TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);

        Assert.Throws<InvalidOperationException>(() => tp.Advance(TimeSpan.FromSeconds(5)));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(1)));

        tp.Advance(TimeSpan.Zero);

        Assert.That(fired, Is.EqualTo(new[] { "good" }));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(5)));
    }

    [Test]
    public void Advance_FromInsideCallback_IsCarriedOutAfterIt()
    {
        var tp = new FakeTimeProvider();
        var seen = new List<DateTimeOffset>();
        using var first = tp.CreateTimer(_ => tp.Advance(TimeSpan.FromSeconds(10)), null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        using var second = tp.CreateTimer(_ => seen.Add(tp.GetUtcNow()), null, TimeSpan.FromSeconds(8), Timeout.InfiniteTimeSpan);

        tp.Advance(TimeSpan.FromSeconds(2));

        Assert.That(seen, Is.EqualTo(new[] { Millennium.AddSeconds(8) }));
        Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(12)));
    }

    [Test]
    [CancelAfter(10000)]
    public void Timers_FireExactlyOnceInDueOrder_WhenCreatedAndAdvancedConcurrently()
    {
        var random = TestSeed.CreateRandom();
        var dueMs = Enumerable.Range(0, 2000).Select(_ => random.Next(1, 5000)).ToArray();
        var tp = new FakeTimeProvider();
        var fired = new int[dueMs.Length];
        var order = new List<long>();
        var orderLock = new object();

        Parallel.For(0, dueMs.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            _ = tp.CreateTimer(_ =>
            {
                Interlocked.Increment(ref fired[i]);
                lock (orderLock)
                {
                    order.Add(tp.GetTimestamp());
                }
            }, null, TimeSpan.FromMilliseconds(dueMs[i]), Timeout.InfiniteTimeSpan);
        });
        Parallel.For(0, 5000, new ParallelOptions { MaxDegreeOfParallelism = 4 }, _ => tp.Advance(TimeSpan.FromMilliseconds(1)));

        Assert.Multiple(() =>
        {
            Assert.That(fired, Is.All.EqualTo(1));
            Assert.That(order, Is.Ordered);
            Assert.That(tp.GetUtcNow(), Is.EqualTo(Millennium.AddSeconds(5)));
            Assert.That(tp.PendingTimerCount, Is.Zero);
        });
    }
}
