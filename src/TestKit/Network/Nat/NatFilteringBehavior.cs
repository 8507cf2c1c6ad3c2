namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// Which inbound connection attempts a NAT or firewall lets through to an existing mapping
/// (RFC 4787 §5). Attempts to a public endpoint with no mapping are always dropped.
/// </summary>
public enum NatFilteringBehavior
{
    /// <summary>Anyone may connect to an existing mapping ("full cone").</summary>
    EndpointIndependent,

    /// <summary>Only hosts the inside node has dialed through the mapping, from any port ("restricted cone").</summary>
    AddressDependent,

    /// <summary>Only the exact endpoints the inside node has dialed through the mapping ("port-restricted cone").</summary>
    AddressAndPortDependent,
}
