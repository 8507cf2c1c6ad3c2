using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>Settings of the client side of circuit relay v2 (<see cref="CircuitRelayTransport"/>).</summary>
public sealed record CircuitRelayOptions
{
    /// <summary>How long a relay may take to answer RESERVE or CONNECT, and a dialer's STOP CONNECT to arrive.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A reservation is renewed when this fraction of its remaining time has passed (go-libp2p renews
    /// at about 3/4), leaving the rest for retries.
    /// </summary>
    public double RefreshAt { get; init; } = 0.75;

    /// <summary>After a failed renewal or a lost relay, the next try comes this much later.</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Relayed connections waiting for the host to accept them; past it the relay is told RESOURCE_LIMIT_EXCEEDED.</summary>
    public int AcceptBacklog { get; init; } = 16;

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
