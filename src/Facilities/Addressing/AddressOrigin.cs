using System.Net;
using System.Net.Sockets;

namespace P2PInference.Facilities.Addressing;

/// <summary>
/// Who is behind a remote address, as far as limits can tell: the unit one party controls and pays
/// for. An IPv4 address (also when it reaches us over an IPv6 socket, mapped); an IPv6 /64 (one
/// subscriber is handed a whole /64, so counting single addresses would hand it 2^64 budgets); the
/// first component of any other kind of address.
/// </summary>
public static class AddressOrigin
{
    /// <summary>The origin key of <paramref name="remote"/> (e.g. <c>/ip4/203.0.113.7</c>, <c>/ip6/2001:db8::/64</c>); <paramref name="loopback"/> when it is this machine.</summary>
    public static string Of(Multiaddress remote, out bool loopback)
    {
        ArgumentNullException.ThrowIfNull(remote);
        loopback = false;
        if (remote.Components.Count == 0) return string.Empty;
        var first = remote.Components[0];
        if (!IPAddress.TryParse(first.ValueText, out var ip)) return "/" + first.Protocol.Name + "/" + first.ValueText;
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        loopback = IPAddress.IsLoopback(ip);
        if (ip.AddressFamily != AddressFamily.InterNetworkV6 || loopback) return (ip.AddressFamily == AddressFamily.InterNetwork ? "/ip4/" : "/ip6/") + ip;
        var bytes = ip.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return "/ip6/" + new IPAddress(bytes) + "/64";
    }

    /// <summary>The origin limits per address count <paramref name="remote"/> under; null for loopback, which they exempt.</summary>
    public static string? ForLimits(Multiaddress remote) => Of(remote, out var loopback) is var origin && !loopback ? origin : null;
}
