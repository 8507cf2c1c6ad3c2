using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace P2PInference.Facilities.Net.Protocols.Dcutr;

/// <summary>Limits and timeouts of a <see cref="DcutrService"/>; the defaults suit the internet.</summary>
public sealed record DcutrOptions
{
    /// <summary>CONNECT/SYNC rounds on one stream before the inbound peer gives up; the spec asks for three.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Bounds opening the stream and each wait for the other side's next message.</summary>
    public TimeSpan MessageTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Bounds one round's direct dials (all addresses at once), handshake included.</summary>
    public TimeSpan DialTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Bounds the unilateral upgrade: the inbound peer dialing the other's advertised addresses before any exchange.</summary>
    public TimeSpan UnilateralDialTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Hole punches running at once, both roles together; a relayed connection past this stays relayed.</summary>
    public int MaxConcurrentHolePunches { get; init; } = 8;

    /// <summary>Addresses sent in a CONNECT, and addresses of the other side's CONNECT dialed, at most.</summary>
    public int MaxAddresses { get; init; } = 8;

    /// <summary>
    /// Dial and send loopback and private (RFC 1918, CGNAT, link-local) addresses. Off on the internet,
    /// where they name some other machine; on for tests on one host or one LAN.
    /// </summary>
    public bool AllowPrivateAddresses { get; init; }

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
