using System.Net;
using System.Net.Sockets;

namespace P2PInference.Facilities.Net.Transport;

/// <summary>Settings for <see cref="TcpTransport"/>.</summary>
public sealed class TcpTransportOptions
{
    /// <summary>The clock the connect timeout runs on (a fake one in tests).</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>How long one dial may take, name resolution included; <see cref="Timeout.InfiniteTimeSpan"/> for no limit.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>SO_RCVBUF for every connection; null keeps the operating system's default.</summary>
    public int? ReceiveBufferSize { get; init; }

    /// <summary>SO_SNDBUF for every connection; null keeps the operating system's default.</summary>
    public int? SendBufferSize { get; init; }

    /// <summary>Connections the kernel may queue before they are accepted.</summary>
    public int ListenBacklog { get; init; } = 512;

    /// <summary>
    /// Listeners share their port with outbound connections (SO_REUSEADDR and SO_REUSEPORT), and a
    /// dial leaves from the port of a listener of the same address family, falling back to an
    /// ephemeral port when that one cannot be used (the same remote is already connected from it,
    /// or TIME_WAIT holds it). On by default, as in go-libp2p: a NAT then maps a node's outbound
    /// connections to the public port identify reports to its peers, which is the port both TCP
    /// hole punching (DCUtR) and AutoNAT's dial-backs need; with ephemeral ports every connection
    /// gets a mapping nobody else can dial. Linux only: Windows' SO_REUSEADDR would let any other
    /// process take over a bound port, and elsewhere it is untested, so there dials use ephemeral ports.
    /// </summary>
    public bool ReusePort { get; init; } = true;

    /// <summary>
    /// Every connection accepted on this transport's listeners must start with a PROXY protocol header
    /// (version 1 or 2, <see cref="ProxyProtocolHeader"/>), which a load balancer in front of them sends
    /// to name the client; the host reads it and treats the connection as coming from that client. A
    /// connection without a valid header is closed: were the header optional, anyone who reached the
    /// port directly could name any address. Off by default; dials are unaffected.
    /// </summary>
    public bool ProxyProtocol { get; init; }

    /// <summary>
    /// With <see cref="ProxyProtocol"/>: the load balancers' addresses. Connections from these networks must start with a
    /// PROXY protocol header, and only their headers are read; a connection from anywhere else is a peer that dialed the
    /// node directly and is taken as it comes, so a header it sends is never believed (it fails the upgrade as bytes that
    /// are not libp2p's). Empty (the default): every accepted connection must start with a header. An IPv4 peer seen on a
    /// dual-stack socket as IPv6-mapped is matched as IPv4.
    /// </summary>
    public IReadOnlyList<IPNetwork> ProxyProtocolSources { get; init; } = [];

    /// <summary>Name resolution for <c>/dns*</c> addresses; replaced in tests that must not touch a real resolver.</summary>
    internal Func<string, AddressFamily, CancellationToken, Task<IPAddress[]>> Resolver { get; init; } = Dns.GetHostAddressesAsync;
}
