namespace P2PInference.Workers.Auth;

/// <summary>How repeated failed logins for one email are slowed down.</summary>
public sealed class LoginThrottleOptions
{
    /// <summary>Failures within <see cref="Window"/> after which further attempts are refused.</summary>
    public int MaxFailures { get; set; } = 5;

    /// <summary>How long a failure counts. Once the oldest counted failure is this old, one more attempt is allowed.</summary>
    public TimeSpan Window { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>
    /// Emails whose failures are remembered at once. Bounds the throttle's memory under a spray of
    /// made-up addresses; past it, the entries whose failures have all expired are dropped first,
    /// then the stalest.
    /// </summary>
    public int MaxTrackedEmails { get; set; } = 100_000;
}
