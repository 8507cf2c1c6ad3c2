using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>An AutoNAT conclusion and how sure of it we are.</summary>
/// <param name="Confidence">Agreeing answers since the conclusion was reached (it was reached with the threshold's worth), capped at twice the threshold.</param>
/// <param name="ReachedAddress">When <see cref="NatReachability.Public"/>, the address a peer last reached us on.</param>
public sealed record NatStatus(NatReachability Reachability, int Confidence, Multiaddress? ReachedAddress)
{
    public static NatStatus Unknown { get; } = new(NatReachability.Unknown, 0, null);

    public override string ToString() => Reachability switch
    {
        NatReachability.Public => $"public (confidence {Confidence}{(ReachedAddress is null ? "" : $", reached at {ReachedAddress}")})",
        NatReachability.Private => $"private (confidence {Confidence})",
        _ => "unknown",
    };
}
