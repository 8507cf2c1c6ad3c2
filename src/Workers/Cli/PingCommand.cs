using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Protocols.Ping;

namespace P2PInference.Workers.Cli;

/// <summary><c>p2pinference ping MULTIADDR</c>: libp2p ping, one round-trip time a line.</summary>
internal static class PingCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var address = CliOptions.TargetAddress();
        var count = new Option<int>("--count", "-c") { Description = "Number of pings", DefaultValueFactory = _ => 3 };
        var interval = new Option<double>("--interval") { Description = "Seconds between pings", DefaultValueFactory = _ => 1.0 };
        var timeout = CliOptions.TimeoutSeconds(10);
        var json = CliOptions.Json();
        var holePunchAllowPrivate = CliOptions.HolePunchAllowPrivate();
        var command = new Command("ping", "Measure round-trip times to a peer with /ipfs/ping/1.0.0") { address, count, interval, timeout, json, holePunchAllowPrivate };
        command.SetAction((result, ct) => CliErrors.RunAsync(error, async () =>
        {
            var target = CliOptions.ParseAddress(result.GetValue(address)!);
            var n = result.GetValue(count);
            if (n < 1) throw new ArgumentException("--count must be at least 1");
            var asJson = result.GetValue(json);
            var time = TimeProvider.System;
            await using var host = CliNode.CreateHost(KeyPair.Generate());
            await using var dcutr = CliNode.EnableHolePunching(host, allowPrivateAddresses: result.GetValue(holePunchAllowPrivate));
            var connection = await ConnectWithinAsync(host, target, TimeSpan.FromSeconds(result.GetValue(timeout)), ct);
            // A relayed connection may become direct (DCUtR); the hole punch has its own bound, then --timeout covers the pings.
            if (!asJson) connection = await CliNode.AwaitDirectAsync(host, dcutr, connection, output, ct);
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(result.GetValue(timeout)), time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, deadline.Token);
            var (stream, _) = await connection.OpenStreamAsync([PingProtocol.ProtocolId], linked.Token);
            await using var _ = stream;
            var failures = 0;
            for (var seq = 1; seq <= n; seq++)
            {
                if (seq > 1 && result.GetValue(interval) > 0)
                    await Task.Delay(TimeSpan.FromSeconds(result.GetValue(interval)), time, linked.Token);
                try
                {
                    var rtt = await PingProtocol.PingAsync(stream, time, linked.Token);
                    var ms = rtt.TotalMilliseconds;
                    await output.WriteLineAsync(asJson
                        ? JsonSerializer.Serialize(new { peerId = connection.RemotePeer.ToString(), seq, rttMs = Math.Round(ms, 3), relayed = connection.IsRelayed })
                        : string.Create(CultureInfo.InvariantCulture, $"pong from {connection.RemotePeer}: seq={seq} time={ms:0.###} ms{(connection.IsRelayed ? " (relayed)" : "")}"));
                }
                catch (Exception e) when (CliErrors.Describe(e) is { } message && e is not OperationCanceledException)
                {
                    failures++;
                    await error.WriteLineAsync($"error: ping {seq} failed: {message}");
                    break;
                }
            }
            return failures == 0 ? 0 : CliErrors.Failure;
        }));
        return command;
    }

    private static async Task<Facilities.Net.Host.PeerConnection> ConnectWithinAsync(Facilities.Net.Host.P2PHost host, Facilities.Addressing.Multiaddress target,
        TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = new CancellationTokenSource(timeout, TimeProvider.System);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        return await CliNode.ConnectAsync(host, target, linked.Token);
    }
}
