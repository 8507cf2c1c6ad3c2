namespace P2PInference.Workers.Gateway;

/// <summary>Who a credential belongs to, as Auth said, and the quota the gateway enforces for it.</summary>
public sealed record AuthenticatedCaller(string UserId, string Email, string KeyId, RateLimitQuota? Quota, DateTimeOffset? ExpiresAt)
{
    /// <summary>
    /// The rate-limit bucket: the user's, whichever of their API keys or tokens is used — a quota is
    /// the user's, and a user may hold many keys.
    /// </summary>
    public string RateLimitKey => "user:" + UserId;
}
