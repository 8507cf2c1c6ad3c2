using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht.Proto;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Which addresses of the peers a kad message names we take: those of a reply's closer peers and
/// providers, and those an ADD_PROVIDER gives for its sender. A reply may name 2k peers with many
/// addresses each, and a lookup dials what it learns: taken whole, one malicious reply could make us
/// dial hundreds of addresses on our own machine, our LAN or a third party's. So the rule of
/// <see cref="NamedAddresses"/> applies, on the wire form: an address whose <see cref="AddressScope"/> is
/// narrower than that of the address we reached the sender at is dropped, and at most
/// <see cref="MaxAddressesPerNamedPeer"/> are kept per named peer.
/// </summary>
internal static class KadReplyAddresses
{
    /// <summary><see cref="NamedAddresses.MaxPerPeer"/>.</summary>
    public const int MaxAddressesPerNamedPeer = NamedAddresses.MaxPerPeer;

    /// <summary>Drops, in place, the addresses of <paramref name="reply"/>'s peers that a replier reached at <paramref name="replierScope"/> may not name.</summary>
    public static void Restrict(Message reply, AddressScope replierScope)
    {
        foreach (var peer in reply.CloserPeers) Restrict(peer, replierScope);
        foreach (var peer in reply.ProviderPeers) Restrict(peer, replierScope);
    }

    /// <summary>Drops, in place, the addresses of <paramref name="peer"/> that a sender reached at <paramref name="replierScope"/> may not name.</summary>
    public static void Restrict(Message.Types.Peer peer, AddressScope replierScope)
    {
        // An address we cannot read goes too: it would be skipped when parsed anyway.
        var kept = NamedAddresses.FirstAllowed(peer.Addrs, replierScope, static (address, scope) => NamedAddresses.MayName(scope, address.Span), MaxAddressesPerNamedPeer);
        if (ReferenceEquals(kept, peer.Addrs)) return;
        // Rebuilt, not removed from one at a time, which would cost the square of a padded list's length.
        peer.Addrs.Clear();
        peer.Addrs.AddRange(kept);
    }
}
