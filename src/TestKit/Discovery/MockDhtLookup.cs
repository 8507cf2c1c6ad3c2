using P2PInference.Facilities.Identity;

namespace P2PInference.TestKit.Discovery;

/// <summary>
/// One lookup as the mock DHT's knobs see it: who asked, for which topic, and its number among all
/// lookups on the registry (1 for the first), so a knob can fail or filter e.g. only the first few.
/// </summary>
public readonly record struct MockDhtLookup(PeerId Requester, string Topic, int Number);
