using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.Identify;

/// <summary>What a peer tells about itself over identify.</summary>
/// <param name="ObservedAddress">The address the sender sees the receiver at; null when it has none.</param>
/// <param name="ProtocolVersion">Family of protocols, e.g. <c>ipfs/0.1.0</c>; empty when not sent.</param>
/// <param name="AgentVersion">Implementation, e.g. <c>p2pinference/1.0.0</c>; empty when not sent.</param>
public sealed record IdentifyInfo(
    PublicKey PublicKey,
    IReadOnlyList<Multiaddress> ListenAddresses,
    IReadOnlyList<string> Protocols,
    Multiaddress? ObservedAddress,
    string ProtocolVersion,
    string AgentVersion);
