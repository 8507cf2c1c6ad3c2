using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// Bounds on the dial-backs an <see cref="AutoNatServer"/> makes for others. Every dial-back is a
/// connection the server opens on a stranger's behalf, so the defaults are small; a request past a
/// limit is answered <see cref="AutoNatResponseStatus.DialRefused"/>, which costs the requester
/// nothing but an answer without evidence.
/// </summary>
public sealed class AutoNatServerOptions
{
    /// <summary>Dial-backs for one peer per <see cref="RateWindow"/>.</summary>
    public int MaxDialBacksPerPeer { get; init; } = 3;

    /// <summary>
    /// Dial-backs for the peers at one address (an IPv4 address, an IPv6 /64, or the first component
    /// of another kind of address) per <see cref="RateWindow"/>. PeerIds cost nothing to mint, so
    /// without it one machine could take the whole <see cref="MaxDialBacks"/>; several peers behind
    /// one NAT still get a few each.
    /// </summary>
    public int MaxDialBacksPerAddress { get; init; } = 8;

    /// <summary>Dial-backs for all peers together per <see cref="RateWindow"/>.</summary>
    public int MaxDialBacks { get; init; } = 30;

    public TimeSpan RateWindow { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Requests being dialled back at once; one more is refused rather than queued.</summary>
    public int MaxConcurrentDialBacks { get; init; } = 4;

    /// <summary>Addresses of one request that are tried, in the requester's order, after filtering; the rest are ignored.</summary>
    public int MaxAddressesPerRequest { get; init; } = 4;

    /// <summary>Bounds all dial attempts of one request together (each dial's handshake is also bounded by the host's upgrade timeout).</summary>
    public TimeSpan DialBackTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long a requester may take to send its request, and to take the answer.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The largest request read; at most <see cref="AutoNatMessageCodec.MaxMessageLength"/>, which js-libp2p also keeps to.</summary>
    public int MaxMessageLength { get; init; } = AutoNatMessageCodec.MaxMessageLength;

    /// <summary>
    /// Dial back loopback, private (RFC 1918, CGNAT, link-local, unique-local) addresses too. Off by
    /// default, as in js- and go-libp2p: reaching a requester on a private address proves only that
    /// it is reachable from our network, and it would take that for public reachability. Tests on
    /// one machine and private clusters turn it on. The same-IP rule applies either way.
    /// </summary>
    public bool AllowPrivateAddresses { get; init; }

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
