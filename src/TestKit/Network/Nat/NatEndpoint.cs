using System.Net;
using P2PInference.Facilities.Addressing;

namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// Where a connection attempt goes or comes from: a node's own <c>/memory/name</c> (port 0) or a
/// router's public <c>/ip4/A/tcp/P</c>. Hosts compare by <see cref="Host"/> for address-dependent behaviour.
/// </summary>
internal readonly record struct NatEndpoint(string Host, int Port)
{
    public static NatEndpoint Node(string name) => new(name, 0);

    public bool IsNode => Port == 0;

    public Multiaddress ToAddress() =>
        IsNode ? Multiaddress.Memory(Host) : Multiaddress.FromIPEndPoint(new IPEndPoint(IPAddress.Parse(Host), Port));

    /// <summary><c>/memory/name</c> or <c>/ip4/A/tcp/P</c>, each optionally followed by <c>/p2p/id</c>; null for anything else.</summary>
    public static NatEndpoint? FromAddress(Multiaddress address)
    {
        var name = InMemoryTransport.TargetName(address);
        if (name is not null) return Node(name);
        var components = address.Components;
        if (components.Count is < 2 or > 3 || components[0].Protocol.Code != MultiaddressProtocol.Ip4.Code) return null;
        if (components.Count == 3 && components[2].Protocol.Code != MultiaddressProtocol.P2p.Code) return null;
        var hostPort = address.TcpHostPort();
        return hostPort is { Port: > 0 } hp ? new NatEndpoint(hp.Host, hp.Port) : null;
    }

    public override string ToString() => ToAddress().ToString();
}
