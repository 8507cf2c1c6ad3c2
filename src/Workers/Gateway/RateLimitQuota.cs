namespace P2PInference.Workers.Gateway;

/// <summary>A token bucket's shape: it refills at <see cref="RequestsPerMinute"/> and holds at most <see cref="Burst"/> requests.</summary>
public readonly record struct RateLimitQuota(uint RequestsPerMinute, uint Burst)
{
    public bool IsValid => RequestsPerMinute >= 1 && Burst >= 1;

    public override string ToString() => $"{RequestsPerMinute} requests per minute, burst {Burst}";
}
