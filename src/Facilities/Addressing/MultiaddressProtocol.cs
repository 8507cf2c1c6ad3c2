namespace P2PInference.Facilities.Addressing;

/// <summary>
/// A multiaddr protocol from the multicodec table. <see cref="Size"/> is the value's size in bits:
/// 0 for none, -1 for a varint-length-prefixed value.
/// </summary>
public sealed record MultiaddressProtocol(int Code, string Name, int Size)
{
    public const int Variable = -1;

    public static readonly MultiaddressProtocol Ip4 = new(4, "ip4", 32);
    public static readonly MultiaddressProtocol Tcp = new(6, "tcp", 16);
    public static readonly MultiaddressProtocol Dns = new(53, "dns", Variable);
    public static readonly MultiaddressProtocol Dns4 = new(54, "dns4", Variable);
    public static readonly MultiaddressProtocol Dns6 = new(55, "dns6", Variable);
    public static readonly MultiaddressProtocol DnsAddr = new(56, "dnsaddr", Variable);
    public static readonly MultiaddressProtocol Ip6 = new(41, "ip6", 128);
    public static readonly MultiaddressProtocol Udp = new(273, "udp", 16);
    public static readonly MultiaddressProtocol P2pCircuit = new(290, "p2p-circuit", 0);
    public static readonly MultiaddressProtocol P2p = new(421, "p2p", Variable);
    public static readonly MultiaddressProtocol QuicV1 = new(461, "quic-v1", 0);
    public static readonly MultiaddressProtocol Ws = new(477, "ws", 0);
    public static readonly MultiaddressProtocol Wss = new(478, "wss", 0);
    /// <summary>The TestKit's in-memory network: the value is a node's name on that network.</summary>
    public static readonly MultiaddressProtocol Memory = new(777, "memory", Variable);

    private static readonly MultiaddressProtocol[] All =
        [Ip4, Tcp, Dns, Dns4, Dns6, DnsAddr, Ip6, Udp, P2pCircuit, P2p, QuicV1, Ws, Wss, Memory];

    private static readonly Dictionary<int, MultiaddressProtocol> ByCode = All.ToDictionary(p => p.Code);
    private static readonly Dictionary<string, MultiaddressProtocol> ByName =
        All.ToDictionary(p => p.Name, StringComparer.Ordinal);

    public static bool TryGet(int code, out MultiaddressProtocol protocol) => ByCode.TryGetValue(code, out protocol!);

    public static bool TryGet(string name, out MultiaddressProtocol protocol)
    {
        // "ipfs" is the historical name of p2p.
        if (name == "ipfs") name = "p2p";
        return ByName.TryGetValue(name, out protocol!);
    }
}
