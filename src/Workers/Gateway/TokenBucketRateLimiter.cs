namespace P2PInference.Workers.Gateway;

/// <summary>
/// Per-key token buckets on an injected clock: each key starts with a full bucket of
/// <see cref="RateLimitQuota.Burst"/> requests that refills at <see cref="RateLimitQuota.RequestsPerMinute"/>.
/// Memory is bounded by <c>capacity</c> buckets: when full, buckets that have refilled completely
/// are dropped first (forgetting them changes nothing: a new bucket starts full), then the least
/// recently used.
/// </summary>
public sealed class TokenBucketRateLimiter
{
    private readonly TimeProvider _time;
    private readonly int _capacity;
    private readonly object _gate = new();
    private readonly Dictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);

    public TokenBucketRateLimiter(TimeProvider time, int capacity)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _time = time;
        _capacity = capacity;
    }

    /// <summary>Buckets held now.</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _buckets.Count;
        }
    }

    /// <summary>Takes one request from <paramref name="key"/>'s bucket, or says how long until one is available.</summary>
    public RateLimitDecision TryAcquire(string key, RateLimitQuota quota)
    {
        ArgumentNullException.ThrowIfNull(key);
        ThrowIfInvalid(quota);
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            if (!_buckets.TryGetValue(key, out var bucket))
            {
                if (_buckets.Count >= _capacity) EvictLocked(now);
                bucket = new Bucket { Tokens = quota.Burst, Updated = now, Quota = quota };
                _buckets.Add(key, bucket);
            }
            else
            {
                Refill(bucket, now);
                if (bucket.Quota != quota)
                {
                    // Auth changed the caller's quota: the new burst caps what is saved up.
                    bucket.Quota = quota;
                    bucket.Tokens = Math.Min(bucket.Tokens, quota.Burst);
                }
            }
            bucket.LastUsed = now;
            if (bucket.Tokens >= 1)
            {
                bucket.Tokens -= 1;
                return RateLimitDecision.Allow;
            }
            return new RateLimitDecision(false, WaitFor(bucket.Tokens, quota));
        }
    }

    /// <summary>
    /// Whether <paramref name="key"/>'s bucket holds a request now, without taking it: for budgets spent
    /// only on some outcomes (a credential Auth refuses), checked before the work that decides it.
    /// </summary>
    public RateLimitDecision Peek(string key, RateLimitQuota quota)
    {
        ArgumentNullException.ThrowIfNull(key);
        ThrowIfInvalid(quota);
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            // No bucket is a full one; none is made, so peeking costs no memory.
            if (!_buckets.TryGetValue(key, out var bucket)) return RateLimitDecision.Allow;
            Refill(bucket, now);
            var tokens = Math.Min(bucket.Tokens, quota.Burst);
            return tokens >= 1 ? RateLimitDecision.Allow : new RateLimitDecision(false, WaitFor(tokens, quota));
        }
    }

    private static void ThrowIfInvalid(RateLimitQuota quota)
    {
        if (!quota.IsValid) throw new ArgumentOutOfRangeException(nameof(quota), quota, "a quota needs at least 1 request per minute and a burst of at least 1");
    }

    private static TimeSpan WaitFor(double tokens, RateLimitQuota quota)
    {
        var wait = TimeSpan.FromSeconds((1 - tokens) / (quota.RequestsPerMinute / 60.0));
        return wait > TimeSpan.FromMilliseconds(1) ? wait : TimeSpan.FromMilliseconds(1);
    }

    private void Refill(Bucket bucket, long now)
    {
        var elapsed = _time.GetElapsedTime(bucket.Updated, now);
        if (elapsed > TimeSpan.Zero)
            bucket.Tokens = Math.Min(bucket.Quota.Burst, bucket.Tokens + elapsed.TotalSeconds * bucket.Quota.RequestsPerMinute / 60.0);
        bucket.Updated = now;
    }

    private void EvictLocked(long now)
    {
        foreach (var (key, bucket) in _buckets)
        {
            Refill(bucket, now);
            if (bucket.Tokens >= bucket.Quota.Burst) _buckets.Remove(key);
        }
        // Evict in batches so a run of new keys costs one sort per tenth of the capacity, not one scan each.
        var target = _capacity - Math.Max(1, _capacity / 10);
        if (_buckets.Count <= target) return;
        foreach (var (key, _) in _buckets.OrderBy(b => b.Value.LastUsed).Take(_buckets.Count - target).ToArray())
            _buckets.Remove(key);
    }

    private sealed class Bucket
    {
        public double Tokens;
        public long Updated;
        public long LastUsed;
        public RateLimitQuota Quota;
    }
}
