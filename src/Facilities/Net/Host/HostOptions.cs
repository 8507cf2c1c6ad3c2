using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Facilities.Net.Host;

/// <summary>What a <see cref="P2PHost"/> is made of. Only <see cref="Identity"/> and <see cref="Transports"/> are required.</summary>
public sealed record HostOptions
{
    public required KeyPair Identity { get; init; }
    public required IReadOnlyList<ITransport> Transports { get; init; }

    /// <summary>
    /// Addresses peers are told to dial this node at, before its listen addresses (identify, the DHT, relay
    /// reservations): the public address of a forwarded port, a cloud VM's public IP in front of its private one, a DNS
    /// name. A trailing <c>/p2p/</c> must be this node's. Listening is not affected.
    /// </summary>
    public IReadOnlyList<Addressing.Multiaddress> AnnounceAddresses { get; init; } = [];

    /// <summary>
    /// Why an operator's <paramref name="address"/> cannot be announced, to follow the address in an error; null when it
    /// can. The settings check and the CLI ask this, so both refuse the same addresses with the same words.
    /// </summary>
    public static string? AnnounceAddressProblem(Addressing.Multiaddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.PeerId is not null) return "ends in /p2p/; leave it out, the node's own id is added";
        if (address.HasUnspecifiedHost) return "is not an address peers can dial; name the address they reach this node at";
        return null;
    }

    /// <summary>The machine's addresses, which a listen address on 0.0.0.0 or :: is announced as; replaced in tests.</summary>
    internal Func<IReadOnlyList<System.Net.IPAddress>> MachineAddresses { get; init; } = AnnouncedAddresses.OfThisMachine;

    /// <summary>Subscribes to changes of the machine's addresses (see <see cref="MachineAddressWatch"/>); replaced in tests.</summary>
    internal Func<Action, IDisposable> WatchMachineAddresses { get; init; } = MachineAddressWatch.OfThisMachine;

    public string AgentVersion { get; init; } = "p2pinference/" + typeof(HostOptions).Assembly.GetName().Version?.ToString(3);
    public string ProtocolVersion { get; init; } = "ipfs/0.1.0";

    public YamuxOptions Yamux { get; init; } = new();

    /// <summary>
    /// The security protocols offered, by protocol id, in order of preference: a dialer proposes
    /// them in this order, a listener accepts any of them. Default: Noise only.
    /// </summary>
    /// <remarks>
    /// <see cref="PlaintextHandshake.ProtocolId"/> (<c>/plaintext/2.0.0</c>) is for tests and
    /// simulations only: it neither encrypts nor authenticates, so any peer on the path can read,
    /// forge or impersonate. Never offer it on a real network; it is never on by default.
    /// </remarks>
    public IReadOnlyList<string> SecurityProtocols { get; init; } = DefaultSecurityProtocols;

    public static readonly IReadOnlyList<string> DefaultSecurityProtocols = [NoiseHandshake.ProtocolId];

    /// <summary>
    /// Offers the muxer inside the Noise handshake (libp2p's early muxer negotiation, as js-libp2p and
    /// go-libp2p do), which saves the dialer the muxer's multistream round trip. A peer that does not
    /// offer it still gets the muxer through multistream-select; off only to exercise that fallback.
    /// </summary>
    public bool EarlyMuxerNegotiation { get; init; } = true;

    /// <summary>Bounds the whole upgrade (multistream, Noise, multistream, Yamux) of one connection.</summary>
    public TimeSpan UpgradeTimeout { get; init; } = DefaultUpgradeTimeout;

    public static readonly TimeSpan DefaultUpgradeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Bounds protocol negotiation on one stream, inbound or outbound; an inbound stream that stalls in it is reset.</summary>
    public TimeSpan StreamNegotiationTimeout { get; init; } = DefaultStreamNegotiationTimeout;

    public static readonly TimeSpan DefaultStreamNegotiationTimeout = TimeSpan.FromSeconds(10);

    /// <summary>A connection with no open stream for this long is closed; one with an open stream never is.</summary>
    public TimeSpan IdleConnectionTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Once a direct connection to a peer has been open this long, a relayed one to the same peer
    /// (which new streams already avoid) is retired: it closes when its last stream ends. Counted
    /// from the direct connection's start, checked every <see cref="MaintenanceInterval"/>.
    /// </summary>
    public TimeSpan RelayedConnectionGracePeriod { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How often idle and redundant connections are looked for.</summary>
    public TimeSpan MaintenanceInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How many peers the <see cref="PeerStore"/> remembers (addresses, protocols) before it forgets the least
    /// recently heard of; connected peers and the DHT's routing table are never forgotten to make room.
    /// </summary>
    public int MaxKnownPeers { get; init; } = PeerStore.DefaultCapacity;

    /// <summary>Inbound connections past this are closed at once, before the handshake.</summary>
    public int MaxInboundConnections { get; init; } = 4096;

    /// <summary>
    /// Inbound connections from one remote address (an IPv4 address, an IPv6 /64, or the first
    /// component of another kind of address) past this are closed at once, before the handshake.
    /// Loopback is exempt. Sized for a NAT with several peers behind it.
    /// </summary>
    public int MaxInboundConnectionsPerAddress { get; init; } = 32;

    /// <summary>
    /// The last this-many of <see cref="MaxInboundConnections"/> are given only to addresses that
    /// have no inbound connection yet, so the connections of a few addresses cannot fill the host.
    /// At most a quarter of <see cref="MaxInboundConnections"/> is kept back, whatever this says.
    /// </summary>
    public int InboundConnectionsReservedForNewAddresses { get; init; } = 256;

    /// <summary>
    /// The last this-many of <see cref="MaxInboundConnections"/> are kept for peers the host's
    /// trusted-peer check accepts (<see cref="P2PHost.KeepInboundCapacityFor"/>): a peer that lands in
    /// them and fails the check within <see cref="IdentifyTimeout"/> is closed, so peers that cost
    /// nothing to run cannot take every slot from the peers a node exists to serve. Without a check
    /// nothing is kept back. At most a quarter of <see cref="MaxInboundConnections"/>, whatever this says.
    /// </summary>
    public int InboundConnectionsReservedForTrustedPeers { get; init; } = 256;

    /// <summary>
    /// Connections to or from one peer (by PeerId) past this are closed once the handshake names
    /// the peer. Two is normal (a simultaneous dial, until the duplicate is retired).
    /// </summary>
    public int MaxConnectionsPerPeer { get; init; } = 4;

    /// <summary>
    /// Run identify on every new connection to learn the remote's addresses and protocols. Either
    /// way a connection runs identify at most once; when this is off, the first
    /// <see cref="P2PHost.IdentifyAsync(PeerConnection, CancellationToken)"/> starts it.
    /// </summary>
    public bool IdentifyOnConnect { get; init; } = true;

    /// <summary>Bounds a connection's identify exchange, from opening the stream to reading the message; also bounds serving one.</summary>
    public TimeSpan IdentifyTimeout { get; init; } = DefaultIdentifyTimeout;

    public static readonly TimeSpan DefaultIdentifyTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Close an inbound connection whose peer did not answer the identify started on connect within
    /// <see cref="IdentifyTimeout"/> (only with <see cref="IdentifyOnConnect"/>). Every libp2p peer
    /// answers identify; one that connects and stalls would otherwise hold an inbound slot until the
    /// idle timeout. A wrong answer is ignored as before; only silence costs the connection.
    /// </summary>
    public bool CloseInboundWithoutIdentify { get; init; } = true;

    /// <summary>
    /// Treat every peer that dialed us as one on a public address, whatever address its connection
    /// comes from. Behind source NAT or a proxy that replaces the peer's address (a Kubernetes service
    /// with the cluster traffic policy, a TCP load balancer), every inbound peer seems to come from a
    /// private address, and a private peer may name our LAN's addresses (for us to dial, through the
    /// peer store and kad) and is told the LAN addresses of others. Set it there. The per-address inbound
    /// cap then counts the proxy's address for every peer: raise <see cref="MaxInboundConnectionsPerAddress"/> too.
    /// A load balancer that sends the PROXY protocol passes each peer's own address instead
    /// (<see cref="TcpTransportOptions.ProxyProtocol"/>); the host refuses the two together.
    /// </summary>
    public bool InboundPeersArePublic { get; init; }

    /// <summary>
    /// Inbound connections on a PROXY protocol listener (<see cref="TcpTransportOptions.ProxyProtocol"/>) that may be
    /// waiting for their header at once; past this a new one is closed at once. Each waits at most <see cref="UpgradeTimeout"/>.
    /// </summary>
    internal int MaxPendingProxyHeaders { get; init; } = 256;

    /// <summary>
    /// How long the ping handler waits for the next payload (and for its echo to be taken) before it
    /// resets the stream, so an open ping stream cannot hold a connection (an open stream keeps it
    /// from the idle timeout) without pinging.
    /// </summary>
    public TimeSpan PingTimeout { get; init; } = DefaultPingTimeout;

    public static readonly TimeSpan DefaultPingTimeout = TimeSpan.FromSeconds(10);

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Source of the host's unpredictable bytes (Noise ephemeral keys, ping payloads); seeded only in simulations.</summary>
    public IRandomSource RandomSource { get; init; } = SystemRandomSource.Instance;
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
