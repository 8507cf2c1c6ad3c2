using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Dht;

/// <summary>The end of an iterative lookup: the closest peers that answered, closest first, and its cost.</summary>
public sealed record LookupResult(IReadOnlyList<PeerId> ClosestPeers, LookupStats Stats);
