using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Time;

namespace P2PInference.Tests.Unit.Harness;

[CancelAfter(10_000)]
public sealed class VirtualTimeDriverTests
{
    private FakeTimeProvider _time = null!;

    [SetUp]
    public void CreateClock() => _time = new FakeTimeProvider();

    [TestCase(false)]
    [TestCase(true)]
    public async Task WaitUntil_Completes_OnceFakeTimeHasPassedForTheCondition(bool autoAdvance, CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 1, autoAdvance);
        var fired = false;
        using var timer = _time.CreateTimer(_ => fired = true, null, TimeSpan.FromSeconds(10), Timeout.InfiniteTimeSpan);
        var start = _time.GetUtcNow();

        await driver.WaitUntilAsync(() => fired, TimeSpan.FromMinutes(1), token);

        Assert.That(_time.GetUtcNow() - start, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(10)));
        if (!autoAdvance)
            Assert.That(_time.GetUtcNow() - start, Is.EqualTo(TimeSpan.FromSeconds(10)), "stepped to the timer, not past it");
    }

    [Test]
    public async Task WaitUntil_FollowsAChainOfDelays_StepByStep(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 1, autoAdvance: false);
        var ticks = 0;
        _ = Task.Run(async () =>
        {
            for (var i = 0; i < 5; i++)
            {
                await Task.Delay(TimeSpan.FromSeconds(3), _time, token);
                Interlocked.Increment(ref ticks);
            }
        }, token);
        var start = _time.GetUtcNow();

        await driver.WaitUntilAsync(() => Volatile.Read(ref ticks) == 5, TimeSpan.FromMinutes(1), token);

        Assert.That(_time.GetUtcNow() - start, Is.EqualTo(TimeSpan.FromSeconds(15)));
    }

    [Test]
    public async Task WaitUntil_ReturnsAtOnce_WhenTheConditionHolds(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 1, autoAdvance: false);
        var start = _time.GetUtcNow();

        await driver.WaitUntilAsync(() => true, TimeSpan.FromMinutes(1), token);

        Assert.That(_time.GetUtcNow(), Is.EqualTo(start));
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task WaitUntil_TimesOutOnVirtualTime_NamingTheConditionAndTheSeed(bool autoAdvance, CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 424242, autoAdvance);
        var start = _time.GetUtcNow();
        var realStart = TimeProvider.System.GetTimestamp();
        var neverTrue = false;

        var error = Assert.ThrowsAsync<TimeoutException>(() => driver.WaitUntilAsync(() => neverTrue, TimeSpan.FromHours(2), token));

        Assert.That(error!.Message, Does.Contain("neverTrue").And.Contain("P2P_TEST_SEED=424242"));
        Assert.That(_time.GetUtcNow() - start, Is.GreaterThanOrEqualTo(TimeSpan.FromHours(2)).And.LessThan(TimeSpan.FromHours(2) + TimeSpan.FromSeconds(1)));
        Assert.That(TimeProvider.System.GetElapsedTime(realStart), Is.LessThan(TimeSpan.FromSeconds(5)), "two virtual hours cost no real time");
    }

    [Test]
    public async Task WaitUntil_UsesTheGivenDescription(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 7, autoAdvance: false);

        var error = Assert.ThrowsAsync<TimeoutException>(() => driver.WaitUntilAsync(() => false, TimeSpan.FromSeconds(1), token, "the gateway sees two processors"));

        Assert.That(error!.Message, Does.Contain("the gateway sees two processors"));
    }

    [Test]
    public async Task WaitUntil_DrivesTime_ForAnAsyncConditionThatWaitsOnTheClock(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 1, autoAdvance: false);
        var checks = 0;
        var start = _time.GetUtcNow();

        await driver.WaitUntilAsync(async () =>
        {
            // A check that itself takes virtual time, as a ping with latency would.
            await Task.Delay(TimeSpan.FromSeconds(2), _time, token);
            return ++checks == 3;
        }, TimeSpan.FromMinutes(1), token);

        Assert.That(checks, Is.EqualTo(3));
        Assert.That(_time.GetUtcNow() - start, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(6)).And.LessThan(TimeSpan.FromSeconds(7)));
    }

    [Test]
    public async Task WaitUntil_TimesOut_WhenAnAsyncCheckNeverCompletes(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 99, autoAdvance: false);
        var never = new TaskCompletionSource<bool>();

        var error = Assert.ThrowsAsync<TimeoutException>(() => driver.WaitUntilAsync(() => never.Task, TimeSpan.FromSeconds(30), token));

        Assert.That(error!.Message, Does.Contain("not completed").And.Contain("P2P_TEST_SEED=99"));
    }

    [Test]
    public async Task WaitUntil_PropagatesTheConditionsException(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 1, autoAdvance: false);

        Assert.ThrowsAsync<InvalidOperationException>(() => driver.WaitUntilAsync(new Func<bool>(() => throw new InvalidOperationException("boom")), TimeSpan.FromSeconds(1), token));
    }

    [Test]
    public async Task RunAsync_MovesTimeUntilTheOperationCompletes(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 1, autoAdvance: false);
        var start = _time.GetUtcNow();

        var result = await driver.RunAsync(async () =>
        {
            await Task.Delay(TimeSpan.FromSeconds(45), _time, token);
            return 17;
        }, TimeSpan.FromMinutes(1), token);

        Assert.That(result, Is.EqualTo(17));
        Assert.That(_time.GetUtcNow() - start, Is.EqualTo(TimeSpan.FromSeconds(45)));
    }

    [Test]
    public async Task AdvanceAsync_MovesTimeByExactlyTheDelta_WithThePumpPaused(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 1, autoAdvance: true);
        var fired = 0;
        using var timer = _time.CreateTimer(_ => Interlocked.Increment(ref fired), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        await driver.WaitUntilAsync(() => Volatile.Read(ref fired) >= 1, TimeSpan.FromMinutes(1), token);
        var before = Volatile.Read(ref fired);
        var start = _time.GetUtcNow();

        var advance = driver.AdvanceAsync(TimeSpan.FromSeconds(10), token);
        await advance;

        Assert.That(Volatile.Read(ref fired), Is.GreaterThanOrEqualTo(before + 10), "every period within the advance fired");
        Assert.That(_time.GetUtcNow() - start, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(10)));
    }

    [Test]
    public async Task Pump_MovesTime_WhenTheSystemIsIdle(CancellationToken token)
    {
        await using var driver = new VirtualTimeDriver(_time, seed: 1, autoAdvance: true);

        // Awaiting the delay directly: only the pump can move the clock.
        await Task.Delay(TimeSpan.FromMinutes(5), _time, token);

        Assert.That(_time.GetUtcNow() - _time.Start, Is.GreaterThanOrEqualTo(TimeSpan.FromMinutes(5)));
    }
}
