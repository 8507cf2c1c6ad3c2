using System.Net;
using System.Net.Sockets;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// The <c>Host</c> section: the connection caps and timeouts a node needs on an open network (see
/// <see cref="HostOptions"/> for what each does). The defaults are <see cref="HostOptions"/>'s own.
/// </summary>
public sealed class HostSettings
{
    private static readonly HostOptions Defaults = new() { Identity = null!, Transports = [] };

    public int MaxInboundConnections { get; set; } = Defaults.MaxInboundConnections;

    public int MaxInboundConnectionsPerAddress { get; set; } = Defaults.MaxInboundConnectionsPerAddress;

    public int InboundConnectionsReservedForNewAddresses { get; set; } = Defaults.InboundConnectionsReservedForNewAddresses;

    /// <summary>Kept for peers holding a grant of the worker's cluster; the bootstrap node keeps none.</summary>
    public int InboundConnectionsReservedForTrustedPeers { get; set; } = Defaults.InboundConnectionsReservedForTrustedPeers;

    public int MaxConnectionsPerPeer { get; set; } = Defaults.MaxConnectionsPerPeer;

    /// <summary>Peers remembered before the least recently heard of is forgotten; peers in use never are.</summary>
    public int MaxKnownPeers { get; set; } = Defaults.MaxKnownPeers;

    public TimeSpan UpgradeTimeout { get; set; } = Defaults.UpgradeTimeout;

    public TimeSpan StreamNegotiationTimeout { get; set; } = Defaults.StreamNegotiationTimeout;

    public TimeSpan IdentifyTimeout { get; set; } = Defaults.IdentifyTimeout;

    public TimeSpan PingTimeout { get; set; } = Defaults.PingTimeout;

    public TimeSpan IdleConnectionTimeout { get; set; } = Defaults.IdleConnectionTimeout;

    /// <summary>
    /// Addresses peers are told to dial this node at, before its listen addresses (see <see cref="HostOptions.AnnounceAddresses"/>):
    /// the public address of a forwarded port, a cloud VM's public IP, a DNS name (<c>/dns4/node.example.com/tcp/4001</c>).
    /// Without them a node still announces what AutoNAT confirms others reach it at.
    /// </summary>
    public List<string> AnnounceAddresses { get; set; } = [];

    /// <summary><see cref="AnnounceAddresses"/>, parsed; the settings check has refused any that does not parse.</summary>
    internal IReadOnlyList<Multiaddress> AnnounceMultiaddresses() =>
        [.. AnnounceAddresses.Select(text => Multiaddress.TryParse(text, out var address) && address is not null
            ? address
            : throw new InvalidOperationException($"Host:AnnounceAddresses: '{text}' is not a valid multiaddr"))];

    /// <summary>For a node behind source NAT or an address-hiding proxy (see <see cref="HostOptions.InboundPeersArePublic"/>).</summary>
    public bool InboundPeersArePublic { get; set; } = Defaults.InboundPeersArePublic;

    /// <summary>
    /// For a node behind a TCP load balancer that sends the PROXY protocol (see <see cref="TcpTransportOptions.ProxyProtocol"/>):
    /// every inbound TCP connection must start with its header, and counts as the client's it names.
    /// </summary>
    public bool ProxyProtocol { get; set; }

    /// <summary>
    /// With <see cref="ProxyProtocol"/>: the load balancers, as addresses or CIDR ranges (<c>10.0.4.0/24</c>, <c>fd00::7</c>).
    /// Only connections from them must send, and may send, the header; a peer dialing the node from anywhere else is taken
    /// directly (see <see cref="TcpTransportOptions.ProxyProtocolSources"/>). Empty: every inbound TCP connection must send it.
    /// </summary>
    public List<string> ProxyProtocolSources { get; set; } = [];

    /// <summary><see cref="ProxyProtocolSources"/>, parsed; the settings check has refused any that does not parse.</summary>
    internal IReadOnlyList<IPNetwork> ProxyProtocolNetworks() =>
        [.. ProxyProtocolSources.Select(text => TryParseSource(text, out var network)
            ? network
            : throw new InvalidOperationException($"Host:ProxyProtocolSources: '{text}' is not an address or CIDR range"))];

    /// <summary>An address (a network of one) or a CIDR range whose address has no bits set past its prefix.</summary>
    internal static bool TryParseSource(string text, out IPNetwork network)
    {
        text = text.Trim();
        if (IPAddress.TryParse(text, out var address) && !text.Contains('/', StringComparison.Ordinal))
        {
            if (!IsWrittenOut(text, address))
            {
                network = default;
                return false;
            }

            network = new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128);
            return true;
        }

        // .NET clears the bits past the prefix; a trust list must not widen "10.0.4.9/24" to a range silently.
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        return IPNetwork.TryParse(text, out network) && slash > 0
            && IPAddress.TryParse(text.AsSpan(0, slash), out var written) && written.Equals(network.BaseAddress)
            && IsWrittenOut(text[..slash], written);
    }

    /// <summary>
    /// An IPv4 address must be its four decimal parts: .NET also reads <c>10.0.4</c> as 10.0.0.4, <c>10</c> as 0.0.0.10
    /// and <c>010.0.0.1</c> as 8.0.0.1, so a typo would name another network without a word.
    /// </summary>
    private static bool IsWrittenOut(string text, IPAddress address) =>
        address.AddressFamily != AddressFamily.InterNetwork || address.ToString() == text;
}
