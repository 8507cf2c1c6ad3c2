using System.Net;
using System.Net.Sockets;

namespace P2PInference.Facilities.Net.Transport;

/// <summary>Settings for <see cref="TcpTransport"/>.</summary>
public sealed class TcpTransportOptions
{
    /// <summary>The clock the connect timeout runs on (a fake one in tests).</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>How long one dial may take, name resolution included; <see cref="Timeout.InfiniteTimeSpan"/> for no limit.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>SO_RCVBUF for every connection; null keeps the operating system's default.</summary>
    public int? ReceiveBufferSize { get; init; }

    /// <summary>SO_SNDBUF for every connection; null keeps the operating system's default.</summary>
    public int? SendBufferSize { get; init; }

    /// <summary>Connections the kernel may queue before they are accepted.</summary>
    public int ListenBacklog { get; init; } = 512;

    /// <summary>Name resolution for <c>/dns*</c> addresses; replaced in tests that must not touch a real resolver.</summary>
    internal Func<string, AddressFamily, CancellationToken, Task<IPAddress[]>> Resolver { get; init; } = Dns.GetHostAddressesAsync;
}
