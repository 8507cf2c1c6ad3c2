using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Protocols.Dcutr;

/// <summary>A DCUtR message: CONNECT carries the sender's addresses to dial, SYNC none.</summary>
public sealed record HolePunchMessage(HolePunchMessageType Type, IReadOnlyList<Multiaddress> Addresses)
{
    public static HolePunchMessage Connect(IReadOnlyList<Multiaddress> addresses) => new(HolePunchMessageType.Connect, addresses);

    public static readonly HolePunchMessage Sync = new(HolePunchMessageType.Sync, []);
}
