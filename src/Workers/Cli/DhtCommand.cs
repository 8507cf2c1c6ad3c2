using System.CommandLine;
using System.Text.Json;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;

namespace P2PInference.Workers.Cli;

/// <summary><c>p2pinference dht find TOPIC</c>: joins through a bootstrap peer and lists a topic's providers.</summary>
internal static class DhtCommand
{
    public const int Found = 0;
    public const int NoneFound = 1;
    public const int Error = 2;

    public static Command Create(TextWriter output, TextWriter error)
    {
        var command = new Command("dht", "Query the Kademlia DHT");
        command.Subcommands.Add(CreateFind(output, error));
        return command;
    }

    private static Command CreateFind(TextWriter output, TextWriter error)
    {
        var topic = new Argument<string>("topic") { Description = "Topic to look up, e.g. p2pinference/gateway" };
        var timeout = CliOptions.TimeoutSeconds(30);
        var json = CliOptions.Json();
        var dht = new DhtOptions();
        var command = new Command("find", "Find the providers of a topic (exit 0: found, 1: none, 2: error)") { topic, timeout, json };
        dht.AddTo(command);
        command.SetAction((result, ct) => CliErrors.RunAsync(error, async () =>
        {
            var options = dht.Create(result, DhtMode.Client);
            if (options.BootstrapPeers.Count == 0) throw new ArgumentException("--bootstrap is required to join the network");
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(result.GetValue(timeout)), TimeProvider.System);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, deadline.Token);
            await using var host = CliNode.CreateHost(KeyPair.Generate());
            await ConnectToAnyAsync(host, options, linked.Token);
            await using var kademlia = new KademliaDht(host, options);
            await kademlia.StartAsync(linked.Token);
            await kademlia.WaitUntilJoinedAsync(linked.Token);
            var providers = await kademlia.LookupAsync(result.GetValue(topic)!, linked.Token);
            if (result.GetValue(json))
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(new
                {
                    topic = result.GetValue(topic),
                    providers = providers.Select(p => new { peerId = p.PeerId.ToString(), addrs = p.Addresses.Select(a => a.ToString()) }),
                }));
            }
            else
            {
                foreach (var p in providers)
                    await output.WriteLineAsync($"{p.PeerId} {string.Join(' ', p.Addresses)}");
            }
            return providers.Count > 0 ? Found : NoneFound;
        }, Error));
        return command;
    }

    /// <summary>
    /// A one-shot query has nothing to wait for if no bootstrap peer answers, so fail at once with
    /// the reason (a long-running node instead keeps retrying on its refresh timer).
    /// </summary>
    private static async Task ConnectToAnyAsync(P2PHost host, KademliaDhtOptions options, CancellationToken cancellationToken)
    {
        var attempts = options.BootstrapPeers.Select(a => host.ConnectAsync(a, cancellationToken)).ToArray();
        try
        {
            await Task.WhenAll(attempts);
        }
        catch (Exception) when (attempts.Any(a => a.IsCompletedSuccessfully))
        {
        }
    }
}
