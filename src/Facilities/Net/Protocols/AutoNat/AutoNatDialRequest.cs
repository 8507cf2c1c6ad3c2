using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>A DIAL message: "dial me, <paramref name="Peer"/>, back on these addresses".</summary>
/// <param name="Addresses">The addresses to try, without <c>/p2p/</c>; addresses the reader could not parse are left out.</param>
public sealed record AutoNatDialRequest(PeerId Peer, IReadOnlyList<Multiaddress> Addresses);
