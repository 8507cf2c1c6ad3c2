using P2PInference.Facilities.Net.Transport;

namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// A dial that crosses a NAT or firewall, from its first SYN until it connects or gives up: TCP's
/// SYN_SENT. While here it holds its outbound mapping, can meet a dial coming the other way
/// (simultaneous open), and, when its SYN was dropped, retransmits on the network's clock.
/// </summary>
internal sealed class InFlightDial(string from, NatTable? sourceTable, NatMapping? sourceMapping, NatEndpoint target, DateTimeOffset deadline)
{
    public string From { get; } = from;

    /// <summary>The router or firewall the dial leaves through; null for a node in the open.</summary>
    public NatTable? SourceTable { get; } = sourceTable;

    public NatMapping? SourceMapping { get; } = sourceMapping;

    /// <summary>Where the far end sees the dial come from.</summary>
    public NatEndpoint Source { get; } = sourceMapping?.Public ?? NatEndpoint.Node(from);

    public NatEndpoint Target { get; } = target;

    public DateTimeOffset Deadline { get; } = deadline;

    public TaskCompletionSource<RawConnection> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public bool Done { get; set; }

    public ITimer? Retransmit { get; set; }

    public int Retransmits { get; set; }

    public override string ToString() => $"{From} ({Source}) -> {Target}";
}
