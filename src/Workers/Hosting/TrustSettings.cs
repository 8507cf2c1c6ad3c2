namespace P2PInference.Workers.Hosting;

/// <summary>
/// The <c>Trust</c> section: how a worker proves its role and checks everyone else's. Auth, gateway
/// and processor need <see cref="Grant"/> or <see cref="ClusterKey"/>; the bootstrap node needs neither.
/// </summary>
public sealed class TrustSettings
{
    /// <summary>A grant file from <c>p2pinference cluster grant</c> for this node's PeerId and role.</summary>
    public string? Grant { get; set; }

    /// <summary>The cluster key file from <c>p2pinference cluster init</c>: the worker signs its own grant at start.</summary>
    public string? ClusterKey { get; set; }

    /// <summary>The operator's revocation list (grant serials and PeerIds, one a line), reloaded when it changes.</summary>
    public string? RevocationList { get; set; }

    /// <summary>How long a grant a peer presented is believed before it is asked again, and how often the revocation list is reread.</summary>
    public TimeSpan CachePeriod { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Lifetime of the grant a worker signs itself with <see cref="ClusterKey"/>.</summary>
    public TimeSpan SelfGrantValidity { get; set; } = TimeSpan.FromDays(365);
}
