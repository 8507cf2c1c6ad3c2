namespace P2PInference.Workers.Auth;

/// <summary>The request quota a gateway enforces for a user (a token bucket: rate and burst).</summary>
public sealed class AuthQuota
{
    public uint RequestsPerMinute { get; set; } = 60;

    public uint Burst { get; set; } = 10;
}
