namespace P2PInference.Facilities.Addressing;

/// <summary>
/// How far an address reaches, narrowest first: an address of a narrower scope means something only
/// near the one who holds it (this machine, one link, one site), so it is ordered below a wider one.
/// See <see cref="AddressScopes"/>.
/// </summary>
public enum AddressScope
{
    /// <summary>
    /// This machine: loopback, 0.0.0.0/8 (a dial to 0.0.0.0 reaches this machine), <c>localhost</c>; also a
    /// DNS name that is not a host name, which a resolver might read as an address.
    /// </summary>
    Loopback,

    /// <summary>One link: IPv4 169.254/16, IPv6 fe80::/10, mDNS <c>.local</c> names.</summary>
    LinkLocal,

    /// <summary>One site or carrier: RFC 1918, CGNAT (100.64/10), IPv6 unique-local and site-local.</summary>
    Private,

    /// <summary>Everything else: public IPs (the documentation ranges too), DNS names, in-memory and other non-IP addresses.</summary>
    Public,
}
