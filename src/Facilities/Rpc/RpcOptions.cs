using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>Limits, firewall and topic routing of an RPC node; the same for the real node and the TestKit twin.</summary>
public sealed record RpcOptions
{
    public const int DefaultMaxMessageSize = 4 * 1024 * 1024;

    /// <summary>Largest request or response payload, in bytes; past it the call fails with <see cref="RpcStatusCode.ResourceExhausted"/>.</summary>
    public int MaxMessageSize { get; init; } = DefaultMaxMessageSize;

    /// <summary>Calls one remote peer may have in flight here at once; past it: <see cref="RpcStatusCode.ResourceExhausted"/>.</summary>
    public int MaxConcurrentCallsPerPeer { get; init; } = 256;

    /// <summary>
    /// Bytes of requests one remote peer may have here at once, counted from each request's announced
    /// length until its call ends; past it a new call gets <see cref="RpcStatusCode.ResourceExhausted"/>
    /// before its body is read. A peer with nothing in flight may always send one message of up to
    /// <see cref="MaxMessageSize"/>.
    /// </summary>
    public long MaxInFlightBytesPerPeer { get; init; } = DefaultMaxInFlightBytesPerPeer;

    public const long DefaultMaxInFlightBytesPerPeer = 32L * 1024 * 1024;

    /// <summary>Only these peers may call this node at all (others get <see cref="RpcStatusCode.PermissionDenied"/>); null lets everyone in.</summary>
    public IReadOnlySet<PeerId>? AllowedPeers { get; init; }

    /// <summary>Deadline of calls whose options set none; null means such calls have no deadline.</summary>
    public TimeSpan? DefaultTimeout { get; init; }

    /// <summary>How long an inbound stream may take to deliver its request envelope.</summary>
    public TimeSpan RequestReadTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a topic's providers are cached before discovery is asked again.</summary>
    public TimeSpan TopicCacheTtl { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Providers tried by one idempotent topic call before it gives up with <see cref="RpcStatusCode.Unavailable"/>.</summary>
    public int MaxTopicAttempts { get; init; } = 3;

    /// <summary>
    /// Methods whose calls carry bulk data (inference): before such a call goes over a limited
    /// (relayed) connection it waits up to <see cref="DirectConnectionWait"/> for a direct one. Other
    /// calls (grant queries, health) use a limited connection at once. Null or empty: none.
    /// </summary>
    public IReadOnlySet<string>? BulkMethods { get; init; }

    /// <summary>How long a bulk call waits for a direct connection before it goes over the relay; 5 s by default, zero never waits.</summary>
    public TimeSpan DirectConnectionWait { get; init; } = DefaultDirectConnectionWait;

    public static readonly TimeSpan DefaultDirectConnectionWait = TimeSpan.FromSeconds(5);

    /// <summary>Weight of the newest latency sample in a provider's moving average (0..1].</summary>
    public double LatencyEwmaAlpha { get; init; } = 0.3;

    /// <summary>Source of the random choices of the load balancer; seed it to replay a run.</summary>
    public Random Random { get; init; } = SystemRandomSource.Instance.CreateRandom();

    /// <summary>
    /// Source of the trace ids of calls made without one. Choices (<see cref="Random"/>) and ids are
    /// drawn apart, so a call's id never shifts which provider a later call picks. Request ids need
    /// neither: they are this node's PeerId suffix and a counter. Seeded only in simulations.
    /// </summary>
    public IRandomSource RandomSource { get; init; } = SystemRandomSource.Instance;

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMessageSize, 1, nameof(MaxMessageSize));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxMessageSize, 1 << 30, nameof(MaxMessageSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConcurrentCallsPerPeer, 1, nameof(MaxConcurrentCallsPerPeer));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxInFlightBytesPerPeer, 1, nameof(MaxInFlightBytesPerPeer));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxTopicAttempts, 1, nameof(MaxTopicAttempts));
        if (LatencyEwmaAlpha is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(LatencyEwmaAlpha), LatencyEwmaAlpha, "must be in (0, 1]");
        if (RequestReadTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(RequestReadTimeout));
        if (TopicCacheTtl < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(TopicCacheTtl));
        if (DirectConnectionWait < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(DirectConnectionWait));
        if (DefaultTimeout is { } t && t <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(DefaultTimeout));
        ArgumentNullException.ThrowIfNull(Random);
        ArgumentNullException.ThrowIfNull(RandomSource);
        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentNullException.ThrowIfNull(LoggerFactory);
    }
}
