using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Gateway;

namespace P2PInference.Tests.Unit.Gateway;

public sealed class TokenBucketRateLimiterTests
{
    private static readonly RateLimitQuota SixtyBurstThree = new(60, 3);

    [Test]
    public void TryAcquire_AllowsTheBurst_ThenSaysWhenTheNextRequestIsAllowed()
    {
        var time = new FakeTimeProvider();
        var limiter = new TokenBucketRateLimiter(time, 10);

        var allowed = Enumerable.Range(0, 3).Select(_ => limiter.TryAcquire("k", SixtyBurstThree).Allowed).ToArray();
        var refused = limiter.TryAcquire("k", SixtyBurstThree);

        Assert.That(allowed, Is.All.True);
        Assert.That(refused.Allowed, Is.False);
        Assert.That(refused.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(1)));
    }

    [Test]
    public void Peek_SaysWhatTryAcquireWould_WithoutTakingOrMakingABucket()
    {
        var time = new FakeTimeProvider();
        var limiter = new TokenBucketRateLimiter(time, 10);

        var unknown = limiter.Peek("k", SixtyBurstThree);
        var bucketsAfterPeek = limiter.Count;
        for (var i = 0; i < 3; i++) limiter.TryAcquire("k", SixtyBurstThree);
        var empty = limiter.Peek("k", SixtyBurstThree);
        var stillEmpty = limiter.Peek("k", SixtyBurstThree);
        time.Advance(TimeSpan.FromSeconds(1));
        var refilled = limiter.Peek("k", SixtyBurstThree);

        Assert.Multiple(() =>
        {
            Assert.That(unknown.Allowed, Is.True);
            Assert.That(bucketsAfterPeek, Is.Zero, "peeking at an unknown key makes no bucket");
            Assert.That(empty.Allowed, Is.False);
            Assert.That(empty.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(1)));
            Assert.That(stillEmpty.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(1)), "a peek takes nothing");
            Assert.That(refilled.Allowed, Is.True);
            Assert.That(limiter.TryAcquire("k", SixtyBurstThree).Allowed, Is.True, "and the peeked request is still there");
        });
    }

    [Test]
    public void TryAcquire_RefillsAtTheRate_OnTheInjectedClock_UpToTheBurst()
    {
        var time = new FakeTimeProvider();
        var limiter = new TokenBucketRateLimiter(time, 10);
        for (var i = 0; i < 3; i++) limiter.TryAcquire("k", SixtyBurstThree);

        time.Advance(TimeSpan.FromMilliseconds(500));
        var half = limiter.TryAcquire("k", SixtyBurstThree);
        time.Advance(TimeSpan.FromMilliseconds(500));
        var whole = limiter.TryAcquire("k", SixtyBurstThree);
        time.Advance(TimeSpan.FromHours(1));
        var afterLongIdle = Enumerable.Range(0, 4).Select(_ => limiter.TryAcquire("k", SixtyBurstThree).Allowed).ToArray();

        Assert.That(half.Allowed, Is.False);
        Assert.That(half.RetryAfter, Is.EqualTo(TimeSpan.FromMilliseconds(500)));
        Assert.That(whole.Allowed, Is.True);
        Assert.That(afterLongIdle, Is.EqualTo(new[] { true, true, true, false }), "idle time saves up no more than the burst");
    }

    [Test]
    public void Keys_HaveSeparateBuckets()
    {
        var limiter = new TokenBucketRateLimiter(new FakeTimeProvider(), 10);
        var one = new RateLimitQuota(1, 1);

        Assert.That(limiter.TryAcquire("a", one).Allowed, Is.True);
        Assert.That(limiter.TryAcquire("a", one).Allowed, Is.False);
        Assert.That(limiter.TryAcquire("b", one).Allowed, Is.True);
    }

    [Test]
    public void LoweredQuota_CapsWhatWasSavedUp()
    {
        var limiter = new TokenBucketRateLimiter(new FakeTimeProvider(), 10);
        limiter.TryAcquire("k", new RateLimitQuota(60, 100));

        var allowed = Enumerable.Range(0, 3).Count(_ => limiter.TryAcquire("k", new RateLimitQuota(60, 2)).Allowed);

        Assert.That(allowed, Is.EqualTo(2));
    }

    [Test]
    public void Memory_IsBounded_UnderKeyChurn()
    {
        var limiter = new TokenBucketRateLimiter(new FakeTimeProvider(), 100);

        for (var i = 0; i < 10_000; i++) limiter.TryAcquire("key-" + i, SixtyBurstThree);

        Assert.That(limiter.Count, Is.LessThanOrEqualTo(100));
    }

    [Test]
    public void Eviction_DropsRefilledBucketsFirst_AndRemembersADrainedOne()
    {
        var time = new FakeTimeProvider();
        var limiter = new TokenBucketRateLimiter(time, 100);
        var slow = new RateLimitQuota(1, 1);
        limiter.TryAcquire("drained", slow);
        for (var i = 0; i < 99; i++) limiter.TryAcquire("idle-" + i, SixtyBurstThree);
        time.Advance(TimeSpan.FromSeconds(10)); // the idle ones are full again; the drained one is not

        for (var i = 0; i < 10; i++) limiter.TryAcquire("new-" + i, SixtyBurstThree);

        Assert.That(limiter.Count, Is.LessThanOrEqualTo(100));
        Assert.That(limiter.TryAcquire("drained", slow).Allowed, Is.False, "forgetting it would have handed out a fresh burst");
    }

    [Test]
    public void InvalidQuota_IsRefused()
    {
        var limiter = new TokenBucketRateLimiter(new FakeTimeProvider(), 10);

        Assert.That(() => limiter.TryAcquire("k", new RateLimitQuota(0, 1)), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => limiter.TryAcquire("k", new RateLimitQuota(1, 0)), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
