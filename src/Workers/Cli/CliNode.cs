using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Workers.Cli;

/// <summary>Builds the host the CLI commands run: TCP, and circuit relay for <c>…/p2p-circuit/p2p/PEER</c> addresses.</summary>
internal static class CliNode
{
    public static P2PHost CreateHost(KeyPair identity, ILoggerFactory? loggerFactory = null) => new(new HostOptions
    {
        Identity = identity,
        // The circuit transport goes first: TCP would take a circuit address that starts with /ip4/…/tcp/… for its own.
        Transports = [new CircuitRelayTransport(new CircuitRelayOptions { LoggerFactory = loggerFactory ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance }), new TcpTransport()],
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
