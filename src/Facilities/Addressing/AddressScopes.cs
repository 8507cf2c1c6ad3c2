using System.Net;
using System.Net.Sockets;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Facilities.Addressing;

/// <summary>
/// The <see cref="AddressScope"/> of an address, from its first component (the host): what AutoNAT and
/// DCUtR count as private, and what a kad reply may point us at (a peer we reach on a public address
/// has no business naming addresses on our loopback or LAN).
/// </summary>
public static class AddressScopes
{
    /// <remarks>
    /// The documentation ranges (RFC 5737, 2001:db8::/32) count as public, so test networks built from
    /// them (the TestKit's NAT routers) behave as the internet would.
    /// </remarks>
    public static AddressScope Of(IPAddress ip)
    {
        ArgumentNullException.ThrowIfNull(ip);
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        if (ip.AddressFamily == AddressFamily.InterNetwork)
        {
            Span<byte> b = stackalloc byte[4];
            ip.TryWriteBytes(b, out _);
            return Ipv4Scope(b);
        }
        if (IPAddress.IsLoopback(ip) || ip.Equals(IPAddress.IPv6Any)) return AddressScope.Loopback;
        if (ip.IsIPv6LinkLocal) return AddressScope.LinkLocal;
        return ip.IsIPv6UniqueLocal || ip.IsIPv6SiteLocal ? AddressScope.Private : AddressScope.Public;
    }

    /// <summary>The scope of <paramref name="address"/>'s host; <see cref="AddressScope.Public"/> for the empty address.</summary>
    public static AddressScope Of(Multiaddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return TryGetScope(address.Bytes, out var scope) ? scope : AddressScope.Public;
    }

    /// <summary>
    /// The scope of a binary multiaddr's first component, read without parsing the rest: a kad reply names
    /// up to 2k peers with several addresses each, and most of them are already known.
    /// </summary>
    /// <returns>False when the first component cannot be read (truncated, not minimal).</returns>
    public static bool TryGetScope(ReadOnlySpan<byte> binary, out AddressScope scope)
    {
        scope = AddressScope.Public;
        if (binary.IsEmpty) return true;
        try
        {
            if (!Varint.TryRead(binary, out var code, out var n)) return false;
            var value = binary[n..];
            if (code == (ulong)MultiaddressProtocol.Ip4.Code)
            {
                if (value.Length < 4) return false;
                scope = Ipv4Scope(value[..4]);
                return true;
            }
            if (code == (ulong)MultiaddressProtocol.Ip6.Code)
            {
                if (value.Length < 16) return false;
                scope = Of(new IPAddress(value[..16]));
                return true;
            }
            if (IsDnsName(code))
            {
                if (!Varint.TryRead(value, out var length, out n) || length > (ulong)(value.Length - n)) return false;
                scope = OfHostName(System.Text.Encoding.UTF8.GetString(value.Slice(n, (int)length)));
                return true;
            }
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static bool IsDnsName(ulong code) =>
        code == (ulong)MultiaddressProtocol.Dns.Code || code == (ulong)MultiaddressProtocol.Dns4.Code
        || code == (ulong)MultiaddressProtocol.Dns6.Code || code == (ulong)MultiaddressProtocol.DnsAddr.Code;

    /// <summary>
    /// <c>localhost</c> and its subdomains (RFC 6761) are this machine, <c>.local</c> names (mDNS) one link;
    /// a name that is an IP address has that address's scope; other host names are public.
    /// </summary>
    /// <remarks>
    /// A name is resolved by the system (getaddrinfo), which returns an IP literal as it is, in any of the
    /// legacy IPv4 forms too (<c>2130706433</c>, <c>0x7f.1</c>, <c>0177.0.0.1</c> are all 127.0.0.1), so
    /// <c>/dns4/127.0.0.1</c> or <c>/dns4/2130706433</c> would reach our loopback while counting as public.
    /// A name that <see cref="IPAddress.TryParse(string?, out IPAddress?)"/> reads (it reads those forms) has
    /// the address's scope; one that is not a host name (letters, digits, hyphens and underscores in labels
    /// of up to 63, the last label beginning with a letter, ASCII only), which a resolver might still read
    /// as an address, counts as <see cref="AddressScope.Loopback"/>, so only a peer on our own machine may
    /// name it. A real name counts as public here; what it resolves to is checked when it is dialed
    /// (<c>PeerStore.NarrowestDialScope</c>, <c>ITransport.DialAsync(address, narrowestScope, …)</c>).
    /// </remarks>
    internal static AddressScope OfHostName(string name)
    {
        if (IPAddress.TryParse(name, out var literal) || IPAddress.TryParse(name.TrimEnd('.'), out literal)) return Of(literal);
        if (name.EndsWith('.')) name = name[..^1];
        if (!IsHostName(name)) return AddressScope.Loopback;
        if (name.Equals("localhost", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase))
            return AddressScope.Loopback;
        return name.EndsWith(".local", StringComparison.OrdinalIgnoreCase) ? AddressScope.LinkLocal : AddressScope.Public;
    }

    private static bool IsHostName(string name)
    {
        if (name.Length is 0 or > 253) return false;
        var labelStart = 0;
        for (var i = 0; i <= name.Length; i++)
        {
            if (i < name.Length && name[i] != '.')
            {
                var c = name[i];
                if (!char.IsAsciiLetterOrDigit(c) && c != '-' && c != '_') return false;
                continue;
            }
            var length = i - labelStart;
            if (length is 0 or > 63 || name[labelStart] == '-' || name[i - 1] == '-') return false;
            labelStart = i + 1;
        }
        // The last label (a top-level domain, or a single-label name) begins with a letter: every
        // numeric form of an IPv4 address (decimal, octal, 0x hex) begins with a digit.
        var last = name.LastIndexOf('.') + 1;
        return char.IsAsciiLetter(name[last]);
    }

    private static AddressScope Ipv4Scope(ReadOnlySpan<byte> b)
    {
        // 0.0.0.0/8 is "this network" (RFC 1122): a dial to 0.0.0.0 reaches this machine, and the rest is not
        // routed; a name like "1" resolves to 0.0.0.1.
        if (b[0] == 127 || b[0] == 0) return AddressScope.Loopback;
        if (b[0] == 169 && b[1] == 254) return AddressScope.LinkLocal;
        return b[0] == 10
            || (b[0] == 172 && (b[1] & 0xF0) == 16)
            || (b[0] == 192 && b[1] == 168)
            || (b[0] == 100 && (b[1] & 0xC0) == 64)
            ? AddressScope.Private
            : AddressScope.Public;
    }
}
