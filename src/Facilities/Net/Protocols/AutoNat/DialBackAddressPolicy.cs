using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// Which of a requester's addresses an AutoNAT server may dial back. The spec's rule against
/// amplification (RFC 3489 §12.1.1): only addresses on the IP the requester was observed at, so
/// nobody can aim our dials at a third party; and no relayed address or relayed request, whose IP
/// says nothing about the requester.
/// </summary>
internal static class DialBackAddressPolicy
{
    public static bool IsRelayed(Multiaddress address) => address.Has(MultiaddressProtocol.P2pCircuit);

    /// <summary>
    /// The address to dial for <paramref name="candidate"/> (without <c>/p2p/</c>), or null with the
    /// reason it is not dialled.
    /// </summary>
    public static Multiaddress? Check(Multiaddress candidate, Multiaddress observed, PeerId requester, bool allowPrivate, out string? reason)
    {
        reason = null;
        if (IsRelayed(candidate))
        {
            reason = "relayed address";
            return null;
        }
        var claimed = candidate.PeerId;
        if (claimed is not null && claimed != requester)
        {
            reason = "address of another peer";
            return null;
        }
        var target = candidate.WithoutPeerId();
        if (target.Components.Count == 0 || observed.Components.Count == 0)
        {
            reason = "empty address";
            return null;
        }
        var host = target.Components[0];
        var seenAt = observed.Components[0];
        // Host names are not compared: resolving one could point anywhere, the observed IP included.
        if (host.Protocol.Code != seenAt.Protocol.Code || !host.Value.Span.SequenceEqual(seenAt.Value.Span))
        {
            reason = "not the requester's observed host";
            return null;
        }
        if (!allowPrivate && TryGetIp(target, out var ip) && IsPrivate(ip))
        {
            reason = "private address";
            return null;
        }
        return target;
    }

    private static bool TryGetIp(Multiaddress address, out IPAddress ip)
    {
        var first = address.Components[0];
        if (first.Protocol.Code == MultiaddressProtocol.Ip4.Code || first.Protocol.Code == MultiaddressProtocol.Ip6.Code)
        {
            ip = new IPAddress(first.Value.Span);
            return true;
        }
        ip = IPAddress.None;
        return false;
    }

    /// <summary>Loopback, unspecified, RFC 1918, CGNAT (100.64/10), link-local, IPv6 unique-local and link-local: anything <see cref="AddressScopes"/> does not call public.</summary>
    /// <remarks>The documentation ranges (RFC 5737) count as public, so test networks built from them behave as the internet would.</remarks>
    public static bool IsPrivate(IPAddress ip) => AddressScopes.Of(ip) != AddressScope.Public;
}
