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
        var command = new Command("identify", "Show a peer's PeerId, agent, protocols and listen addresses") { address, timeout, json };
        command.SetAction((result, ct) => CliErrors.RunAsync(error, async () =>
        {
            var target = CliOptions.ParseAddress(result.GetValue(address)!);
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(result.GetValue(timeout)), TimeProvider.System);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, deadline.Token);
            await using var host = CliNode.CreateHost(KeyPair.Generate());
            var connection = await CliNode.ConnectAsync(host, target, linked.Token).ConfigureAwait(false);
            var info = await host.IdentifyAsync(connection, linked.Token).ConfigureAwait(false);
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
                })).ConfigureAwait(false);
            }
            else
            {
                await output.WriteLineAsync($"peer id:          {peerId}").ConfigureAwait(false);
                await output.WriteLineAsync($"agent version:    {info.AgentVersion}").ConfigureAwait(false);
                await output.WriteLineAsync($"protocol version: {info.ProtocolVersion}").ConfigureAwait(false);
                await output.WriteLineAsync("protocols:").ConfigureAwait(false);
                foreach (var p in info.Protocols) await output.WriteLineAsync("  " + p).ConfigureAwait(false);
                await output.WriteLineAsync("listen addresses:").ConfigureAwait(false);
                foreach (var a in info.ListenAddresses) await output.WriteLineAsync("  " + a).ConfigureAwait(false);
                if (info.ObservedAddress is not null)
                    await output.WriteLineAsync($"observed address: {info.ObservedAddress}").ConfigureAwait(false);
            }
            return 0;
        }));
        return command;
    }
}
