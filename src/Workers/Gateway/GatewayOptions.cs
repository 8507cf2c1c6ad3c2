namespace P2PInference.Workers.Gateway;

/// <summary>The Gateway worker's settings. <see cref="Validate"/> runs when the worker is built.</summary>
public sealed class GatewayOptions
{
    /// <summary>The longest credential accepted in the <c>authorization</c> metadata (a JWT is well under this).</summary>
    public const int MaxCredentialLength = 8 * 1024;

    /// <summary>How long a credential Auth accepted is trusted without asking again (a revoked key keeps working this long).</summary>
    public TimeSpan CredentialCacheTtl { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a credential Auth refused is refused without asking again; zero: not cached.</summary>
    public TimeSpan NegativeCredentialCacheTtl { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Credentials the cache holds at most; past it the least recently used are dropped.</summary>
    public int CredentialCacheCapacity { get; set; } = 100_000;

    /// <summary>The bucket of callers whose quota Auth did not give, and of unauthenticated account calls per peer.</summary>
    public RateLimitQuota DefaultRateLimit { get; set; } = new(60, 10);

    /// <summary>
    /// One bucket for the account calls (register, login, API keys) of all peers together, taken
    /// after the caller's own per-peer bucket: Auth prices each login and registration at a password
    /// hash, and PeerIds are free to mint, so this bounds what any number of peers can make Auth do.
    /// </summary>
    public RateLimitQuota AccountRateLimit { get; set; } = new(600, 100);

    /// <summary>
    /// The account calls of all peers behind one address (an IPv4 address or IPv6 /64), taken after
    /// the per-peer bucket and before the shared one: minting PeerIds is free, addresses are not, so
    /// one machine cannot spend the shared bucket that everyone else's logins need. Loopback is
    /// exempt (every local process shares it), as is a caller whose address the carrier does not know.
    /// </summary>
    public RateLimitQuota AccountRateLimitPerAddress { get; set; } = new(120, 30);

    /// <summary>
    /// Credentials Auth may refuse for one peer, and for all peers behind one address (loopback
    /// exempt), before an inference or cancel from there is refused without asking Auth: each new
    /// credential costs Auth a lookup, and a flood of made-up API keys would otherwise take the
    /// gateway's share of Auth's calls from its real users. Spent only on a refusal, so callers with
    /// valid credentials never touch it.
    /// </summary>
    public RateLimitQuota RefusedCredentialLimit { get; set; } = new(30, 10);

    /// <summary>Rate-limit buckets kept at most; full (idle) buckets are dropped first, then the least recently used.</summary>
    public int RateLimiterCapacity { get; set; } = 100_000;

    /// <summary>The longest prompt accepted, in characters.</summary>
    public int MaxPromptLength { get; set; } = 32 * 1024;

    /// <summary>The model of requests that name none; null or empty: such requests are refused.</summary>
    public string? DefaultModel { get; set; }

    /// <summary>The most tokens one request may ask for; more is lowered to this, none (0) means this.</summary>
    public int MaxTokensCap { get; set; } = 1024;

    /// <summary>Processors tried for one request that fails before its first token.</summary>
    public int ProcessorAttempts { get; set; } = 3;

    /// <summary>How long the processors of a model (and their reported load) are reused before asking them again.</summary>
    public TimeSpan ProcessorCacheTtl { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long the answer of <c>models</c> is reused.</summary>
    public TimeSpan ModelsCacheTtl { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The longest a call to Auth or a processor's status may take, within the caller's own deadline.</summary>
    public TimeSpan BackendTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The largest account request (register, login, keys) accepted, in bytes.</summary>
    public int MaxAccountRequestBytes { get; set; } = 64 * 1024;

    /// <exception cref="ArgumentException">A setting is out of range; the message names it and the allowed range.</exception>
    public void Validate()
    {
        Require(CredentialCacheTtl >= TimeSpan.Zero && CredentialCacheTtl <= TimeSpan.FromMinutes(10),
            $"Gateway:CredentialCacheTtl must be between 0 and 10 minutes; it is {CredentialCacheTtl}.");
        Require(NegativeCredentialCacheTtl >= TimeSpan.Zero && NegativeCredentialCacheTtl <= TimeSpan.FromMinutes(1),
            $"Gateway:NegativeCredentialCacheTtl must be between 0 and 1 minute; it is {NegativeCredentialCacheTtl}.");
        Require(CredentialCacheCapacity is >= 1 and <= 10_000_000,
            $"Gateway:CredentialCacheCapacity must be between 1 and 10000000; it is {CredentialCacheCapacity}.");
        Require(DefaultRateLimit.IsValid,
            $"Gateway:DefaultRateLimit must allow at least 1 request per minute with a burst of at least 1; it is {DefaultRateLimit}.");
        Require(AccountRateLimit.IsValid,
            $"Gateway:AccountRateLimit must allow at least 1 request per minute with a burst of at least 1; it is {AccountRateLimit}.");
        Require(AccountRateLimitPerAddress.IsValid,
            $"Gateway:AccountRateLimitPerAddress must allow at least 1 request per minute with a burst of at least 1; it is {AccountRateLimitPerAddress}.");
        Require(RefusedCredentialLimit.IsValid,
            $"Gateway:RefusedCredentialLimit must allow at least 1 request per minute with a burst of at least 1; it is {RefusedCredentialLimit}.");
        Require(RateLimiterCapacity is >= 1 and <= 10_000_000,
            $"Gateway:RateLimiterCapacity must be between 1 and 10000000; it is {RateLimiterCapacity}.");
        Require(MaxPromptLength is >= 1 and <= 1_000_000,
            $"Gateway:MaxPromptLength must be between 1 and 1000000 characters; it is {MaxPromptLength}.");
        Require(string.IsNullOrEmpty(DefaultModel) || InferRequestRules.IsValidModelName(DefaultModel),
            $"Gateway:DefaultModel must be 1 to {InferRequestRules.MaxModelNameLength} letters, digits or '.', '_', '-', ':', '/'; it is '{DefaultModel}'.");
        Require(MaxTokensCap is >= 1 and <= 1_000_000,
            $"Gateway:MaxTokensCap must be between 1 and 1000000; it is {MaxTokensCap}.");
        Require(ProcessorAttempts is >= 1 and <= 10,
            $"Gateway:ProcessorAttempts must be between 1 and 10; it is {ProcessorAttempts}.");
        Require(ProcessorCacheTtl >= TimeSpan.Zero && ProcessorCacheTtl <= TimeSpan.FromMinutes(10),
            $"Gateway:ProcessorCacheTtl must be between 0 and 10 minutes; it is {ProcessorCacheTtl}.");
        Require(ModelsCacheTtl >= TimeSpan.Zero && ModelsCacheTtl <= TimeSpan.FromMinutes(10),
            $"Gateway:ModelsCacheTtl must be between 0 and 10 minutes; it is {ModelsCacheTtl}.");
        Require(BackendTimeout > TimeSpan.Zero && BackendTimeout <= TimeSpan.FromMinutes(10),
            $"Gateway:BackendTimeout must be more than 0 and at most 10 minutes; it is {BackendTimeout}.");
        Require(MaxAccountRequestBytes is >= 1024 and <= 4 * 1024 * 1024,
            $"Gateway:MaxAccountRequestBytes must be between 1024 and 4194304; it is {MaxAccountRequestBytes}.");
    }

    private static void Require(bool condition, string message)
    {
        if (!condition) throw new ArgumentException(message);
    }
}
