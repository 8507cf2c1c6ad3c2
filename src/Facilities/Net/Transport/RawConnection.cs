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

    public ValueTask DisposeAsync() => Stream.DisposeAsync();
}
