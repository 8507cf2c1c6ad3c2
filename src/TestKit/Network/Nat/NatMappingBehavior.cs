namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// How a NAT chooses the public endpoint of an outbound connection (RFC 4787 §4.1). The inside
/// endpoint is the node itself: like libp2p's TCP transport with port reuse, a node dials from its
/// listening endpoint, so the mapping depends only on where it dials.
/// </summary>
public enum NatMappingBehavior
{
    /// <summary>One public endpoint per inside node, whatever it dials: what identify observes elsewhere is what a hole punch can reach.</summary>
    EndpointIndependent,

    /// <summary>A public endpoint per inside node and destination host (any port of it).</summary>
    AddressDependent,

    /// <summary>A public endpoint per inside node and destination host and port: a symmetric NAT.</summary>
    AddressAndPortDependent,
}
