using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht.Proto;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Which addresses of the peers a kad reply names (closer peers and providers) we take. A reply may
/// name 2k peers with many addresses each, and a lookup dials what it learns: taken whole, one
/// malicious reply could make us dial hundreds of addresses on our own machine, our LAN or a third
/// party's. So an address whose <see cref="AddressScope"/> is narrower than that of the address we
/// reached the replier at is dropped (a peer on a public address cannot know what our loopback or LAN
/// holds; one we reached on loopback or on the LAN can), and at most
/// <see cref="MaxAddressesPerNamedPeer"/> are kept per named peer.
/// </summary>
internal static class KadReplyAddresses
{
    /// <summary>
    /// A peer has a handful of dialable addresses (IPv4 and IPv6, a relay or two); past that, addresses
    /// are more likely a flood than a way in. The same bound as DCUtR's addresses sent or dialed.
    /// </summary>
    public const int MaxAddressesPerNamedPeer = 8;

    /// <summary>Drops, in place, the addresses of <paramref name="reply"/>'s peers that a replier reached at <paramref name="replierScope"/> may not name.</summary>
    public static void Restrict(Message reply, AddressScope replierScope)
    {
        foreach (var peer in reply.CloserPeers) Restrict(peer, replierScope);
        foreach (var peer in reply.ProviderPeers) Restrict(peer, replierScope);
    }

    private static void Restrict(Message.Types.Peer peer, AddressScope replierScope)
    {
        var addresses = peer.Addrs;
        // Nearly every peer passes whole: the list is copied only once an address is dropped. Rebuilt, not
        // removed from one at a time, which would cost the square of a padded list's length.
        List<ByteString>? keep = null;
        var kept = 0;
        for (var i = 0; i < addresses.Count && kept < MaxAddressesPerNamedPeer; i++)
        {
            // An address we cannot read goes too: it would be skipped when parsed anyway.
            var allowed = AddressScopes.TryGetScope(addresses[i].Span, out var scope) && scope >= replierScope;
            if (keep is null)
            {
                if (allowed)
                {
                    kept++;
                    continue;
                }
                keep = new List<ByteString>(MaxAddressesPerNamedPeer);
                for (var j = 0; j < kept; j++) keep.Add(addresses[j]);
            }
            if (!allowed) continue;
            keep.Add(addresses[i]);
            kept++;
        }
        if (keep is null)
        {
            if (kept == addresses.Count) return;
            keep = new List<ByteString>(kept);
            for (var j = 0; j < kept; j++) keep.Add(addresses[j]);
        }
        addresses.Clear();
        addresses.AddRange(keep);
    }
}
