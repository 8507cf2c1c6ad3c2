namespace P2PInference.Facilities.Net.Protocols.Dcutr;

/// <summary>The two DCUtR messages, with their wire values.</summary>
public enum HolePunchMessageType
{
    Connect = 100,
    Sync = 300,
}
