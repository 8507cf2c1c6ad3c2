using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>A peer named in a relay message: the target of a CONNECT, or the source the relay announces to the target.</summary>
public sealed record RelayPeerInfo(PeerId Id, IReadOnlyList<Multiaddress> Addresses)
{
    public RelayPeerInfo(PeerId id) : this(id, []) { }
}
