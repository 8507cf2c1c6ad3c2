using System.Net;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Workers.Cli;

/// <summary>Builds the host the CLI commands run: TCP, and circuit relay for <c>…/p2p-circuit/p2p/PEER</c> addresses.</summary>
internal static class CliNode
{
    /// <param name="announce">Addresses peers are told to dial first (<see cref="HostOptions.AnnounceAddresses"/>).</param>
    public static P2PHost CreateHost(KeyPair identity, ILoggerFactory? loggerFactory = null, IReadOnlyList<Multiaddress>? announce = null) => new(new HostOptions
    {
        Identity = identity,
        AnnounceAddresses = announce ?? [],
        // The circuit transport goes first: TCP would take a circuit address that starts with /ip4/…/tcp/… for its own.
        Transports = [new CircuitRelayTransport(new CircuitRelayOptions { LoggerFactory = loggerFactory ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance }), new TcpTransport()],
        LoggerFactory = loggerFactory ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance,
    });

    public static ILoggerFactory CreateLoggerFactory(LogLevel minimum) => LoggerFactory.Create(builder => builder
        .SetMinimumLevel(minimum)
        .AddSimpleConsole(o => o.SingleLine = true)
        .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));

    /// <summary>How long <c>ping</c> and <c>identify</c> wait for a relayed connection to become direct before using it as it is.</summary>
    public static readonly TimeSpan HolePunchWait = TimeSpan.FromSeconds(10);

    /// <summary>Turns relayed connections into direct ones where the NATs allow (DCUtR), in both roles.</summary>
    public static DcutrService EnableHolePunching(P2PHost host, ILoggerFactory? loggerFactory = null, bool allowPrivateAddresses = false) =>
        new(host, new DcutrOptions
        {
            AllowPrivateAddresses = allowPrivateAddresses,
            LoggerFactory = loggerFactory ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance,
        });

    /// <summary>
    /// For a relayed connection: says so (<c>connection: relayed via RELAY</c>), waits up to
    /// <see cref="HolePunchWait"/> for the peer's hole punch, says how it ended (<c>connection: direct ADDR</c>
    /// or <c>connection: relayed (hole punch failed: REASON)</c>) and returns the connection to use now.
    /// A direct connection is returned as it is, without a line. Scripts grep these line prefixes.
    /// </summary>
    public static async Task<PeerConnection> AwaitDirectAsync(P2PHost host, DcutrService dcutr, PeerConnection connection, TextWriter output,
        CancellationToken cancellationToken)
    {
        if (!connection.IsRelayed) return connection;
        var relay = CircuitAddress.TryParse(connection.RemoteAddress, out var circuit) ? circuit.Relay.ToString() : connection.RemoteAddress.ToString();
        await output.WriteLineAsync($"connection: relayed via {relay}");
        await output.FlushAsync(cancellationToken);
        using var wait = new CancellationTokenSource(HolePunchWait, host.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, wait.Token);
        string reason;
        try
        {
            var outcome = await dcutr.WaitForOutcomeAsync(connection.RemotePeer, linked.Token);
            if (outcome.Connection is { } direct)
            {
                await output.WriteLineAsync($"connection: direct {direct.RemoteAddress}");
                return host.GetConnection(connection.RemotePeer) ?? direct;
            }
            reason = outcome.Reason ?? "unknown";
        }
        catch (OperationCanceledException) when (wait.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            reason = $"no hole punch within {HolePunchWait.TotalSeconds:0} s";
        }
        await output.WriteLineAsync($"connection: relayed (hole punch failed: {reason})");
        return host.GetConnection(connection.RemotePeer) ?? connection;
    }

    /// <summary>Dials an address that must name its peer, for commands that talk to one peer.</summary>
    public static async Task<PeerConnection> ConnectAsync(P2PHost host, Multiaddress address, CancellationToken cancellationToken)
    {
        if (address.PeerId is null)
            throw new FormatException($"'{address}' does not end in /p2p/<PeerId>; the remote must be named so its key can be checked");
        // A hole punch needs this command's connections to leave from a port it listens on (TCP port
        // reuse): the NAT then maps the one to the relay and the punch to the same public port, the
        // one the relay observed and the peer is told to dial. So a command that only dials listens
        // on an ephemeral port of the relay's address family while it runs. A relay on this machine is
        // reached from loopback, so listening there is enough, and tells the peer no other address of ours.
        if (address.Has(MultiaddressProtocol.P2pCircuit) && host.ListenAddresses.Count == 0)
            await host.StartAsync([Multiaddress.Parse(ListenAddressToward(address))], cancellationToken);
        return await host.ConnectAsync(address, cancellationToken);
    }

    private static string ListenAddressToward(Multiaddress relay)
    {
        var first = relay.Components[0];
        var ip6 = first.Protocol.Code == MultiaddressProtocol.Ip6.Code;
        var loopback = (ip6 || first.Protocol.Code == MultiaddressProtocol.Ip4.Code) && IPAddress.IsLoopback(new IPAddress(first.Value.Span));
        return (ip6, loopback) switch
        {
            (true, true) => "/ip6/::1/tcp/0",
            (true, false) => "/ip6/::/tcp/0",
            (false, true) => "/ip4/127.0.0.1/tcp/0",
            (false, false) => "/ip4/0.0.0.0/tcp/0",
        };
    }
}
