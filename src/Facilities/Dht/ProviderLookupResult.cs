using P2PInference.Facilities.Discovery;

namespace P2PInference.Facilities.Dht;

/// <summary>Providers found for a key, and what finding them cost.</summary>
public sealed record ProviderLookupResult(IReadOnlyList<DiscoveredPeer> Providers, LookupStats Stats);
