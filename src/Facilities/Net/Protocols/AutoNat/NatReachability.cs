namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>What AutoNAT concluded about reaching this node from outside.</summary>
public enum NatReachability
{
    /// <summary>Not enough agreeing answers yet.</summary>
    Unknown,

    /// <summary>Peers dialled us back: others can connect to us directly.</summary>
    Public,

    /// <summary>Peers' dial-backs failed: we are behind a NAT or firewall that drops unsolicited inbound connections.</summary>
    Private,
}
