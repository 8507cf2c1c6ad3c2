using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Dht;

/// <summary>One provider of a key as a store holds it: who, where, and until when.</summary>
public sealed record ProviderRecord(PeerId Provider, IReadOnlyList<Multiaddress> Addresses, DateTimeOffset Expires);
