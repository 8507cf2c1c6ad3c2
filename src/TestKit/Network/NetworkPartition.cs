namespace P2PInference.TestKit.Network;

/// <summary>
/// One partition on an <see cref="InMemoryNetwork"/>: traffic from the <see cref="From"/> side to the
/// <see cref="To"/> side (and back, when <see cref="IsTwoWay"/>) is cut in the given <see cref="Mode"/>
/// until <see cref="Heal"/>.
/// </summary>
public sealed class NetworkPartition
{
    private readonly InMemoryNetwork _network;

    internal NetworkPartition(InMemoryNetwork network, IEnumerable<string> from, IEnumerable<string> to, PartitionMode mode, bool twoWay)
    {
        _network = network;
        From = new HashSet<string>(from, StringComparer.Ordinal);
        To = new HashSet<string>(to, StringComparer.Ordinal);
        Mode = mode;
        IsTwoWay = twoWay;
        if (From.Count == 0 || To.Count == 0) throw new ArgumentException("both sides of a partition need at least one node");
    }

    public IReadOnlySet<string> From { get; }
    public IReadOnlySet<string> To { get; }
    public PartitionMode Mode { get; }
    public bool IsTwoWay { get; }
    public bool IsHealed { get; internal set; }

    /// <summary>Removes this partition; stalled connections resume delivering. Idempotent.</summary>
    public void Heal() => _network.Heal(this);

    /// <summary>Whether traffic in the direction <paramref name="from"/> → <paramref name="to"/> is cut.</summary>
    public bool Cuts(string from, string to) =>
        (From.Contains(from) && To.Contains(to)) || (IsTwoWay && From.Contains(to) && To.Contains(from));
}
