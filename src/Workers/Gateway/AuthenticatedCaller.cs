namespace P2PInference.Workers.Gateway;

/// <summary>Who a credential belongs to, as Auth said, and the quota the gateway enforces for it.</summary>
public sealed record AuthenticatedCaller(string UserId, string Email, string KeyId, RateLimitQuota? Quota, DateTimeOffset? ExpiresAt)
{
    /// <summary>The rate-limit bucket: each API key has its own; a login token shares the user's.</summary>
    public string RateLimitKey => KeyId.Length > 0 ? "key:" + KeyId : "user:" + UserId;
}
