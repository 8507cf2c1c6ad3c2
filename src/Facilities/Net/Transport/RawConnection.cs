using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Transport;

/// <summary>A transport connection before the upgrade: a duplex byte stream and its two ends.</summary>
public sealed class RawConnection(Stream stream, Multiaddress localAddress, Multiaddress remoteAddress) : IAsyncDisposable
{
    public Stream Stream { get; } = stream;
    public Multiaddress LocalAddress { get; } = localAddress;
    public Multiaddress RemoteAddress { get; } = remoteAddress;

    /// <summary>Set by a transport whose connections run under limits (a relayed circuit); the upgraded connection says so.</summary>
    public bool IsLimited { get; init; }

    /// <summary>
    /// Set by a listener behind a load balancer that speaks the PROXY protocol (<see cref="TcpTransportOptions.ProxyProtocol"/>):
    /// the stream starts with a header naming the client, and <see cref="RemoteAddress"/> is the proxy's until the host has read it.
    /// </summary>
    public bool StartsWithProxyHeader { get; init; }

    public ValueTask DisposeAsync() => Stream.DisposeAsync();
}
