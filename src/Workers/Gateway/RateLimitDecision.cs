namespace P2PInference.Workers.Gateway;

/// <summary>The answer of <see cref="TokenBucketRateLimiter.TryAcquire"/>: allowed, or how long until a request would be.</summary>
public readonly record struct RateLimitDecision(bool Allowed, TimeSpan RetryAfter)
{
    public static RateLimitDecision Allow { get; } = new(true, TimeSpan.Zero);
}
