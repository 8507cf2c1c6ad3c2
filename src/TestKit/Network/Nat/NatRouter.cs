using System.Net;

namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// A NAT router on an <see cref="InMemoryNetwork"/> (made by <see cref="InMemoryNetwork.AddNatRouter"/>):
/// the nodes added to it form a private segment. They reach each other directly at <c>/memory/name</c>
/// and the rest of the network through the router: an outbound dial leaves from a mapped public endpoint
/// <c>/ip4/PublicAddress/tcp/port</c> chosen by <see cref="NatBehavior.Mapping"/>, which is the remote
/// address the far end (and its identify) sees. From outside, an inside node's <c>/memory</c> address has
/// no route; a dial to a public endpoint reaches the inside node only when a live mapping is there and
/// <see cref="NatBehavior.Filtering"/> admits the dialer, otherwise it is dropped without an answer.
/// </summary>
public sealed class NatRouter
{
    private readonly NatFabric _fabric;

    internal NatRouter(NatFabric fabric, NatTable table, IPAddress publicAddress)
    {
        _fabric = fabric;
        Table = table;
        PublicAddress = publicAddress;
    }

    public string Name => Table.Name;

    public IPAddress PublicAddress { get; }

    public NatBehavior Behavior => Table.Behavior;

    /// <summary>The nodes behind this router.</summary>
    public IReadOnlyCollection<string> Nodes => _fabric.MembersOf(Table);

    /// <summary>Mappings alive now (held by a connection or a dial, or within their timeout).</summary>
    public int MappingCount => _fabric.CountMappings(Table);

    internal NatTable Table { get; }

    /// <summary>Puts <paramref name="nodes"/> behind this router; a node sits behind at most one router or firewall.</summary>
    public NatRouter Add(params string[] nodes)
    {
        _fabric.Attach(Table, nodes);
        return this;
    }

    /// <summary>
    /// Forwards <paramref name="publicPort"/> of <see cref="PublicAddress"/> to <paramref name="node"/> (behind this router),
    /// as an operator's port forward does: anyone's dial to <c>/ip4/PUBLIC/tcp/PORT</c> reaches the node's listener, whatever
    /// the filtering, and it survives <see cref="Reboot"/>. The node's own dials still leave through ordinary mappings.
    /// </summary>
    public NatRouter Forward(int publicPort, string node)
    {
        _fabric.Forward(Table, publicPort, node);
        return this;
    }

    /// <summary>The router loses its state: every mapping is forgotten and the connections through them are reset.</summary>
    public void Reboot() => _fabric.Reboot(Table);

    public override string ToString() => $"NAT {Name} ({PublicAddress}, {Behavior.Mapping} mapping, {Behavior.Filtering} filtering)";
}
