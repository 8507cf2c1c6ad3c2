using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.TestKit.Network;

/// <summary>
/// One node's <see cref="ITransport"/> on an <see cref="InMemoryNetwork"/>. It listens on
/// <c>/memory/&lt;its name&gt;</c> only and dials <c>/memory/&lt;name&gt;</c> or a NAT router's public
/// <c>/ip4/A/tcp/P</c>, optionally followed by <c>/p2p/&lt;id&gt;</c> (which the host checks, not the transport).
/// </summary>
public sealed class InMemoryTransport : ITransport
{
    private readonly InMemoryNetwork _network;

    internal InMemoryTransport(InMemoryNetwork network, string nodeName)
    {
        _network = network;
        NodeName = nodeName;
        Address = Multiaddress.Memory(nodeName);
    }

    public string NodeName { get; }

    /// <summary><c>/memory/&lt;name&gt;</c>: where this node listens and where its dials come from.</summary>
    public Multiaddress Address { get; }

    public InMemoryNetwork Network => _network;

    /// <summary>A node's <c>/memory/name</c>, or a NAT router's public <c>/ip4/A/tcp/P</c> on this network (each optionally with <c>/p2p/id</c>).</summary>
    public bool CanDial(Multiaddress address) => address is not null && _network.CanDial(address);

    public bool CanListen(Multiaddress address) => TargetName(address) is not null;

    public ValueTask<RawConnection> DialAsync(Multiaddress address, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(address);
        return _network.DialAsync(NodeName, address, cancellationToken);
    }

    public ValueTask<ITransportListener> ListenAsync(Multiaddress address, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(address);
        cancellationToken.ThrowIfCancellationRequested();
        var name = TargetName(address) ?? throw new TransportException($"the in-memory transport cannot listen on {address}");
        if (name != NodeName)
            throw new TransportException($"node '{NodeName}' cannot listen on {address}: it can only listen on {Address}");
        return ValueTask.FromResult<ITransportListener>(_network.Listen(NodeName));
    }

    public override string ToString() => Address.ToString();

    /// <summary>The node name of <c>/memory/name[/p2p/id]</c>; null for anything else.</summary>
    internal static string? TargetName(Multiaddress address)
    {
        var components = address.Components;
        if (components.Count is < 1 or > 2) return null;
        if (components[0].Protocol.Code != MultiaddressProtocol.Memory.Code) return null;
        if (components.Count == 2 && components[1].Protocol.Code != MultiaddressProtocol.P2p.Code) return null;
        return components[0].ValueText;
    }
}
