using System.CommandLine;
using System.Text.Json;
using P2PInference.Facilities.Identity;

namespace P2PInference.Workers.Cli;

/// <summary><c>p2pinference identify MULTIADDR</c>: what a peer says about itself over /ipfs/id/1.0.0.</summary>
internal static class IdentifyCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var address = CliOptions.TargetAddress();
        var timeout = CliOptions.TimeoutSeconds(10);
        var json = CliOptions.Json();
        var holePunchAllowPrivate = CliOptions.HolePunchAllowPrivate();
        var command = new Command("identify", "Show a peer's PeerId, agent, protocols and listen addresses") { address, timeout, json, holePunchAllowPrivate };
        command.SetAction((result, ct) => CliErrors.RunAsync(error, async () =>
        {
            var target = CliOptions.ParseAddress(result.GetValue(address)!);
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(result.GetValue(timeout)), TimeProvider.System);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, deadline.Token);
            await using var host = CliNode.CreateHost(KeyPair.Generate());
            await using var dcutr = CliNode.EnableHolePunching(host, allowPrivateAddresses: result.GetValue(holePunchAllowPrivate));
            var connection = await CliNode.ConnectAsync(host, target, linked.Token);
            var info = await host.IdentifyAsync(connection, linked.Token);
            // Identify answered on the relayed connection; the lines after it say whether it became direct (DCUtR).
            if (!result.GetValue(json)) connection = await CliNode.AwaitDirectAsync(host, dcutr, connection, output, ct);
            var peerId = info.PublicKey.ToPeerId().ToString();
            if (result.GetValue(json))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(new
                {
                    peerId,
                    agentVersion = info.AgentVersion,
                    protocolVersion = info.ProtocolVersion,
                    protocols = info.Protocols,
                    listenAddrs = info.ListenAddresses.Select(a => a.ToString()),
                    observedAddr = info.ObservedAddress?.ToString(),
                    relayed = connection.IsRelayed,
                }));
            }
            else
            {
                await output.WriteLineAsync($"peer id:          {peerId}");
                await output.WriteLineAsync($"connection:       {(connection.IsRelayed ? connection.IsLimited ? "relayed, limited" : "relayed" : "direct")} via {connection.RemoteAddress}");
                await output.WriteLineAsync($"agent version:    {info.AgentVersion}");
                await output.WriteLineAsync($"protocol version: {info.ProtocolVersion}");
                await output.WriteLineAsync("protocols:");
                foreach (var p in info.Protocols) await output.WriteLineAsync("  " + p);
                await output.WriteLineAsync("listen addresses:");
                foreach (var a in info.ListenAddresses) await output.WriteLineAsync("  " + a);
                if (info.ObservedAddress is not null)
                    await output.WriteLineAsync($"observed address: {info.ObservedAddress}");
            }
            return 0;
        }));
        return command;
    }
}
