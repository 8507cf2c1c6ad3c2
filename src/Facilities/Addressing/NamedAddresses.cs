namespace P2PInference.Facilities.Addressing;

/// <summary>
/// Which of the addresses a peer names (for others in a kad reply, for itself in ADD_PROVIDER or
/// identify) we take: only those whose <see cref="AddressScope"/> is no narrower than that of the address
/// we reach the peer at. A peer on a public address cannot know what our loopback or LAN holds, and
/// taking what it names would let it aim our dials (and those of the nodes we pass its addresses on to)
/// at them; one we reach on loopback or on the LAN can.
/// </summary>
public static class NamedAddresses
{
    /// <summary>
    /// A peer has a handful of dialable addresses (IPv4 and IPv6, a relay or two); past that, addresses
    /// are more likely a flood than a way in. The same bound as DCUtR's addresses sent or dialed.
    /// </summary>
    public const int MaxPerPeer = 8;

    /// <summary>Whether a peer we reach at <paramref name="namerScope"/> may name the binary multiaddr <paramref name="address"/>; false when it cannot be read.</summary>
    public static bool MayName(AddressScope namerScope, ReadOnlySpan<byte> address) =>
        AddressScopes.TryGetScope(address, out var scope) && scope >= namerScope;

    /// <summary>The first <paramref name="max"/> of <paramref name="addresses"/> a peer we reach at <paramref name="namerScope"/> may name; the list itself when it keeps them all.</summary>
    public static IReadOnlyList<Multiaddress> Restrict(IReadOnlyList<Multiaddress> addresses, AddressScope namerScope, int max = MaxPerPeer) =>
        FirstAllowed(addresses, namerScope, static (address, scope) => AddressScopes.Of(address) >= scope, max);

    /// <summary>
    /// The first <paramref name="max"/> of <paramref name="addresses"/> that <paramref name="allowed"/> keeps; the list
    /// itself when it keeps them all. Nearly every list passes whole, so a copy is made only once one is dropped.
    /// Serves the parsed and the wire form (a kad message's repeated bytes).
    /// </summary>
    internal static IReadOnlyList<T> FirstAllowed<T>(IReadOnlyList<T> addresses, AddressScope namerScope, Func<T, AddressScope, bool> allowed, int max)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        List<T>? keep = null;
        for (var i = 0; i < addresses.Count; i++)
        {
            var ok = allowed(addresses[i], namerScope);
            if (keep is null)
            {
                if (ok && i < max) continue;
                keep = new List<T>(Math.Min(addresses.Count, max));
                for (var j = 0; j < i; j++) keep.Add(addresses[j]);
            }
            if (keep.Count >= max) break;
            if (ok) keep.Add(addresses[i]);
        }
        return keep ?? addresses;
    }
}
