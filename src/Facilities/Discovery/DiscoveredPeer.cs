using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Discovery;

/// <summary>A provider found through discovery, with the addresses it can be dialed on.</summary>
public sealed record DiscoveredPeer(PeerId PeerId, IReadOnlyList<Multiaddress> Addresses);
