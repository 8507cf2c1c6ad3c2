namespace P2PInference.Workers.Auth;

/// <summary>The Auth worker's settings. <see cref="Validate"/> runs when the service is built.</summary>
public sealed class AuthOptions
{
    /// <summary>
    /// OWASP's Password Storage Cheat Sheet level for PBKDF2-HMAC-SHA256 (600,000; 210,000 is its
    /// level for SHA-512). Hashes made with another count are re-made at the user's next login.
    /// </summary>
    public const int DefaultPasswordIterations = 600_000;

    /// <summary>RFC 8018's floor; only test configurations should go this low.</summary>
    public const int MinPasswordIterations = 1_000;

    /// <summary>A ceiling so that one login cannot be made to burn seconds of CPU.</summary>
    public const int MaxPasswordIterations = 10_000_000;

    /// <summary>RFC 5321's path limit less the angle brackets.</summary>
    public const int MaxEmailLength = 254;

    /// <summary>No password policy may ask for more than this.</summary>
    public const int MaxPasswordLengthLimit = 4096;

    public int PasswordIterations { get; set; } = DefaultPasswordIterations;

    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How far a token's times may disagree with this clock (other nodes' clocks drift).</summary>
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    public int MinPasswordLength { get; set; } = 12;

    public int MaxPasswordLength { get; set; } = 1024;

    public LoginThrottleOptions LoginThrottle { get; set; } = new();

    /// <summary>The quota of users that have no override of their own.</summary>
    public AuthQuota DefaultQuota { get; set; } = new();

    /// <summary>The token's <c>iss</c>; validators accept only tokens with this issuer.</summary>
    public string Issuer { get; set; } = "p2pinference-auth";

    /// <summary>The most API keys one user may hold (revoked ones count: they stay listed).</summary>
    public int MaxApiKeysPerUser { get; set; } = 100;

    /// <exception cref="ArgumentException">A setting is out of range; the message names it and the allowed range.</exception>
    public void Validate()
    {
        Require(PasswordIterations is >= MinPasswordIterations and <= MaxPasswordIterations,
            $"Auth:PasswordIterations must be between {MinPasswordIterations} and {MaxPasswordIterations} (recommended {DefaultPasswordIterations}); it is {PasswordIterations}.");
        Require(TokenLifetime >= TimeSpan.FromMinutes(1) && TokenLifetime <= TimeSpan.FromDays(30),
            $"Auth:TokenLifetime must be between 1 minute and 30 days; it is {TokenLifetime}.");
        Require(ClockSkew >= TimeSpan.Zero && ClockSkew <= TimeSpan.FromMinutes(10),
            $"Auth:ClockSkew must be between 0 and 10 minutes; it is {ClockSkew}.");
        Require(MinPasswordLength is >= 8 and <= MaxPasswordLengthLimit,
            $"Auth:MinPasswordLength must be between 8 and {MaxPasswordLengthLimit}; it is {MinPasswordLength}.");
        Require(MaxPasswordLength >= MinPasswordLength && MaxPasswordLength <= MaxPasswordLengthLimit,
            $"Auth:MaxPasswordLength must be between MinPasswordLength ({MinPasswordLength}) and {MaxPasswordLengthLimit}; it is {MaxPasswordLength}.");
        Require(LoginThrottle is not null, "Auth:LoginThrottle must be set.");
        Require(LoginThrottle!.MaxFailures is >= 1 and <= 1000,
            $"Auth:LoginThrottle:MaxFailures must be between 1 and 1000; it is {LoginThrottle.MaxFailures}.");
        Require(LoginThrottle.Window > TimeSpan.Zero && LoginThrottle.Window <= TimeSpan.FromDays(1),
            $"Auth:LoginThrottle:Window must be more than 0 and at most 1 day; it is {LoginThrottle.Window}.");
        Require(LoginThrottle.MaxTrackedEmails is >= 1 and <= 10_000_000,
            $"Auth:LoginThrottle:MaxTrackedEmails must be between 1 and 10000000; it is {LoginThrottle.MaxTrackedEmails}.");
        Require(DefaultQuota is not null, "Auth:DefaultQuota must be set.");
        Require(DefaultQuota!.RequestsPerMinute >= 1, "Auth:DefaultQuota:RequestsPerMinute must be at least 1.");
        Require(DefaultQuota.Burst >= 1, "Auth:DefaultQuota:Burst must be at least 1.");
        Require(!string.IsNullOrWhiteSpace(Issuer) && Issuer.Length <= 256 && Issuer.All(c => c is >= ' ' and <= '~'),
            "Auth:Issuer must be 1 to 256 printable ASCII characters.");
        Require(MaxApiKeysPerUser is >= 1 and <= 10_000,
            $"Auth:MaxApiKeysPerUser must be between 1 and 10000; it is {MaxApiKeysPerUser}.");
    }

    private static void Require(bool condition, string message)
    {
        if (!condition)
        {
            throw new ArgumentException(message);
        }
    }
}
