using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.TestKit.Network.Nat;

namespace P2PInference.TestKit.Harness;

/// <summary>
/// Puts some nodes of a <see cref="TestCluster"/> behind NAT routers (<see cref="TestClusterOptions.Nat"/>):
/// each node with one of <see cref="Roles"/> sits behind a router of its own (<c>nat-&lt;name&gt;</c>,
/// public address 203.0.113.x) with <see cref="Behavior"/>, so nobody outside can dial it until it is
/// reached through a relay. Every host gets a <see cref="CircuitRelayTransport"/> (first in its
/// transports, see <see cref="TestNodeContext.CircuitRelay"/>), and the cluster adds a public relay node
/// (<see cref="RelayNode"/>, role <c>relay</c>) that runs a <see cref="RelayService"/> and announces it
/// in its discovery under <see cref="RelayService.DiscoveryTopic"/>. Reserving on the relay is up to the
/// components (workers do it with their NAT service).
/// </summary>
public sealed record TestNatOptions
{
    /// <summary>How the routers map and filter; port-restricted cone (the common home router) by default.</summary>
    public NatBehavior Behavior { get; init; } = NatBehavior.PortRestrictedCone;

    /// <summary>Nodes with any of these roles go behind NAT; processors by default.</summary>
    public IReadOnlyList<string> Roles { get; init; } = ["processor"];

    /// <summary>Name of the relay node the cluster adds (unless a spec of that name exists already); null: no relay.</summary>
    public string? RelayNode { get; init; } = "relay";

    /// <summary>The relay's limits; the relay service's defaults when null.</summary>
    public RelayServiceOptions? Relay { get; init; }

    /// <summary>Whether <paramref name="spec"/> sits behind a NAT router.</summary>
    public bool IsBehindNat(TestNodeSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return Roles.Any(spec.HasRole);
    }
}
