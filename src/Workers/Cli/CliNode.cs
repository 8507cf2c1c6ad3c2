using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Workers.Cli;

/// <summary>Builds the TCP host the CLI commands run.</summary>
internal static class CliNode
{
    public static P2PHost CreateHost(KeyPair identity, ILoggerFactory? loggerFactory = null) => new(new HostOptions
    {
        Identity = identity,
        Transports = [new TcpTransport()],
        LoggerFactory = loggerFactory ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance,
    });

    public static ILoggerFactory CreateLoggerFactory(LogLevel minimum) => LoggerFactory.Create(builder => builder
        .SetMinimumLevel(minimum)
        .AddSimpleConsole(o => o.SingleLine = true)
        .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));

    /// <summary>Dials an address that must name its peer, for commands that talk to one peer.</summary>
    public static async Task<PeerConnection> ConnectAsync(P2PHost host, Multiaddress address, CancellationToken cancellationToken)
    {
        if (address.PeerId is null)
            throw new FormatException($"'{address}' does not end in /p2p/<PeerId>; the remote must be named so its key can be checked");
        return await host.ConnectAsync(address, cancellationToken);
    }
}
