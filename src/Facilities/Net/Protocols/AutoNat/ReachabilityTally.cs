using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// Turns dial-back answers into a <see cref="NatStatus"/>. A conclusion changes only after
/// <c>threshold</c> answers in a row say otherwise (the spec: "more than 3 peers"): one server that
/// cannot reach us, or one that lies, does not flip it. An answer agreeing with the current
/// conclusion breaks the opposing run and adds to the confidence. Refusals are no evidence and
/// are not counted at all.
/// </summary>
internal sealed class ReachabilityTally(int threshold)
{
    private NatReachability _opposing;
    private int _run;

    public NatStatus Status { get; private set; } = NatStatus.Unknown;

    /// <summary>Counts one answer; true when it changed <see cref="Status"/>'s reachability.</summary>
    public bool Add(AutoNatDialResponse answer)
    {
        var says = answer.Status switch
        {
            AutoNatResponseStatus.Ok => NatReachability.Public,
            AutoNatResponseStatus.DialError => NatReachability.Private,
            _ => NatReachability.Unknown,
        };
        if (says == NatReachability.Unknown) return false;
        var reached = says == NatReachability.Public ? answer.Address : null;
        if (says == Status.Reachability)
        {
            _run = 0;
            Status = Status with { Confidence = Math.Min(Status.Confidence + 1, 2 * threshold), ReachedAddress = reached ?? Status.ReachedAddress };
            return false;
        }
        if (says != _opposing) (_opposing, _run) = (says, 0);
        if (++_run < threshold) return false;
        Status = new NatStatus(says, _run, reached);
        (_opposing, _run) = (NatReachability.Unknown, 0);
        return true;
    }
}
