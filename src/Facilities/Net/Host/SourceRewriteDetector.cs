using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Protocols.Identify;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// What showed that something in front of this node replaces inbound peers' addresses: <see cref="Peers"/> peers that
/// dialed us at the public address <see cref="ReachedAt"/> (their identify's observed address) arrived from
/// <see cref="ArrivedFrom"/>, a private or loopback address.
/// </summary>
public sealed record SourceRewriteEvidence(int Peers, Multiaddress ReachedAt, Multiaddress ArrivedFrom);

/// <summary>
/// Notices a source NAT or proxy in front of this node (a Kubernetes service with the cluster traffic policy, a TCP
/// load balancer) that the operator has not declared with <see cref="HostOptions.InboundPeersArePublic"/>. Behind one,
/// every inbound peer seems to come from a private address, so it may name our LAN's addresses; the setting is the
/// remedy, but nothing told the operator to set it.
/// </summary>
/// <remarks>
/// The sign is a peer that says it dialed us at a public address (identify's observed address, on a connection it
/// opened) while its connection arrived from a private or loopback one. A peer on our LAN that dialed our LAN address
/// says so and is not counted. One peer could lie or hairpin through our router, so the warning waits for
/// <see cref="WitnessesToWarn"/> different peers; it is logged once, and <see cref="Evidence"/> keeps what showed it.
/// </remarks>
internal sealed class SourceRewriteDetector(ILogger logger)
{
    public const int WitnessesToWarn = 2;

    // Bounded by the threshold: once it is met nothing more is collected.
    private readonly HashSet<PeerId> _witnesses = [];
    private readonly Lock _lock = new();
    private SourceRewriteEvidence? _evidence;

    public SourceRewriteEvidence? Evidence
    {
        get
        {
            lock (_lock) return _evidence;
        }
    }

    /// <summary>Looks at a finished identify exchange on <paramref name="connection"/> (not under <see cref="HostOptions.InboundPeersArePublic"/>).</summary>
    public void Observe(PeerConnection connection, IdentifyInfo info)
    {
        if (connection.Direction != ConnectionDirection.Inbound || connection.IsRelayed) return;
        if (info.ObservedAddress is not { Components.Count: > 0 } reachedAt || AddressScopes.Of(reachedAt) != AddressScope.Public) return;
        if (connection.RemoteScope == AddressScope.Public) return;
        SourceRewriteEvidence evidence;
        lock (_lock)
        {
            if (_evidence is not null || !_witnesses.Add(connection.RemotePeer) || _witnesses.Count < WitnessesToWarn) return;
            _evidence = evidence = new SourceRewriteEvidence(_witnesses.Count, reachedAt.WithoutPeerId(), connection.RemoteAddress.WithoutPeerId());
            _witnesses.Clear();
        }
        logger.LogWarning(
            "{Peers} peers that dialed this node at the public address {ReachedAt} arrived from {ArrivedFrom}: a source NAT or proxy in front of " +
            "this node seems to replace peers' addresses, which lets any peer name your LAN's addresses. If so, set Host:InboundPeersArePublic=true " +
            "and raise Host:MaxInboundConnectionsPerAddress, which then counts the proxy's one address for everyone (peers on this LAN whose " +
            "router hairpins their dials to the public address look the same)",
            evidence.Peers, evidence.ReachedAt, evidence.ArrivedFrom);
    }
}
