namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// A stateful firewall on an <see cref="InMemoryNetwork"/> (made by <see cref="InMemoryNetwork.AddFirewall"/>):
/// the nodes behind it keep their own addresses (nothing is translated) and dial out freely, but an
/// inbound dial from outside reaches one of them only when <see cref="Filtering"/> admits it on the state
/// its outbound dials left, within <see cref="StateTimeout"/>; unsolicited dials are dropped without an
/// answer. Nodes behind the same firewall reach each other directly.
/// </summary>
public sealed class Firewall
{
    private readonly NatFabric _fabric;

    internal Firewall(NatFabric fabric, NatTable table)
    {
        _fabric = fabric;
        Table = table;
    }

    public string Name => Table.Name;

    public NatFilteringBehavior Filtering => Table.Behavior.Filtering;

    /// <summary>How long a node's filter state outlives its last connection or dial.</summary>
    public TimeSpan StateTimeout => Table.MappingTimeout;

    /// <summary>The nodes behind this firewall.</summary>
    public IReadOnlyCollection<string> Nodes => _fabric.MembersOf(Table);

    internal NatTable Table { get; }

    /// <summary>Puts <paramref name="nodes"/> behind this firewall; a node sits behind at most one router or firewall.</summary>
    public Firewall Add(params string[] nodes)
    {
        _fabric.Attach(Table, nodes);
        return this;
    }

    public override string ToString() => $"firewall {Name} ({Filtering} filtering)";
}
