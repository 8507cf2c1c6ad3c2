using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Client;

/// <summary>How a <see cref="P2PInferenceClient"/> calls gateways, retries and (for <see cref="P2PInferenceClient.ConnectAsync"/>) joins the network.</summary>
public sealed record ClientOptions
{
    /// <summary>The credential sent with inference calls (<c>ApiKey &lt;key&gt;</c>); wins over <see cref="Token"/> there.</summary>
    public string? ApiKey { get; init; }

    /// <summary>The login token sent with account calls (<c>Bearer &lt;token&gt;</c>), and with inference when there is no API key.</summary>
    public string? Token { get; init; }

    /// <summary>
    /// The cluster whose gateways this client trusts (<c>p2pinference cluster init</c> prints its id). A
    /// gateway must present a gateway grant of this cluster before the client sends it anything; without
    /// a cluster id the client sends no credentials at all (passwords, tokens, API keys).
    /// </summary>
    public ClusterId? ClusterId { get; init; }

    /// <summary>Grants the operator revoked; gateways holding one are not called.</summary>
    public RevocationList Revocations { get; init; } = RevocationList.Empty;

    /// <summary>
    /// A signed revocation list learned before (kept in the CLI's profile): held from the start, so a gateway it revokes
    /// is refused even when that gateway withholds it. Gateways hand on newer ones (<see cref="P2PInferenceClient.SignedRevocations"/>).
    /// One not signed by <see cref="ClusterId"/>'s key is ignored.
    /// </summary>
    public SignedRevocationList? SignedRevocations { get; init; }

    /// <summary>How long a gateway's verified grant is believed before it is asked again.</summary>
    public TimeSpan GrantCachePeriod { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Time allowed for one account or models call.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Time allowed for a whole inference, streamed or not.</summary>
    public TimeSpan InferTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Tries of an idempotent call (the first included) while gateways answer Unavailable.</summary>
    public int MaxAttempts { get; init; } = 4;

    /// <summary>Wait before the second try; it doubles each try up to <see cref="MaxBackoff"/>, with jitter.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(200);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(5);

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Jitter of the backoff, the gateway picked for a stream and request ids; seed it to replay a run.</summary>
    public Random Random { get; init; } = SystemRandomSource.Instance.CreateRandom();

    /// <summary>
    /// <see cref="P2PInferenceClient.ConnectAsync"/>: the source of the client's key when
    /// <see cref="Identity"/> is null, its Noise keys and its trace ids. The system CSPRNG; seeded only in simulations.
    /// </summary>
    public IRandomSource RandomSource { get; init; } = SystemRandomSource.Instance;

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary><see cref="P2PInferenceClient.ConnectAsync"/>: the client's key. Null: a fresh one per connection.</summary>
    public KeyPair? Identity { get; init; }

    /// <summary><see cref="P2PInferenceClient.ConnectAsync"/>: the Kademlia protocol id the network speaks.</summary>
    public string DhtProtocolId { get; init; } = KademliaDhtOptions.DefaultProtocolId;

    /// <summary><see cref="P2PInferenceClient.ConnectAsync"/>: how long joining through the bootstrap peers may take.</summary>
    public TimeSpan JoinTimeout { get; init; } = TimeSpan.FromSeconds(15);

    internal void Validate()
    {
        if (CallTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(CallTimeout), CallTimeout, "must be positive");
        if (InferTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(InferTimeout), InferTimeout, "must be positive");
        if (JoinTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(JoinTimeout), JoinTimeout, "must be positive");
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxAttempts, 1, nameof(MaxAttempts));
        if (InitialBackoff < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(InitialBackoff), InitialBackoff, "must not be negative");
        if (MaxBackoff < InitialBackoff) throw new ArgumentOutOfRangeException(nameof(MaxBackoff), MaxBackoff, "must be at least InitialBackoff");
        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentNullException.ThrowIfNull(Random);
        ArgumentNullException.ThrowIfNull(RandomSource);
        ArgumentNullException.ThrowIfNull(LoggerFactory);
        ArgumentException.ThrowIfNullOrEmpty(DhtProtocolId);
    }
}
