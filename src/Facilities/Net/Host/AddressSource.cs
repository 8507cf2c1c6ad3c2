namespace P2PInference.Facilities.Net.Host;

/// <summary>Where the peer store learned an address, which decides what it may displace.</summary>
public enum AddressSource
{
    /// <summary>Told by someone else (a DHT reply, a provider record relayed by another node, configuration): a claim.</summary>
    ThirdParty,

    /// <summary>Told by the peer itself (identify, its own ADD_PROVIDER) or proven by reaching it there.</summary>
    Self,
}
