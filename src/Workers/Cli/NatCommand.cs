using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Workers.Cli;

/// <summary>
/// <c>p2pinference nat status --bootstrap MA…</c>: starts a transient node, connects to the bootstrap
/// peers (and, through the DHT, to more), runs AutoNAT rounds until a verdict or the timeout, and
/// prints the reachability, the addresses peers observe us at and, unless public, the relays the
/// DHT knows (providers of <see cref="RelayService.DiscoveryTopic"/>). Exit codes: 0 public,
/// 2 private, 3 no verdict in time, 1 an error (no bootstrap peer reachable, bad input).
/// </summary>
internal static class NatCommand
{
    public const int PublicCode = 0;
    public const int PrivateCode = 2;
    public const int UndecidedCode = 3;

    /// <summary>Pause between AutoNAT rounds while undecided: servers answer each request at most a few times a minute.</summary>
    private static readonly TimeSpan RoundPause = TimeSpan.FromSeconds(2);

    /// <summary>Bounds the relay lookup after the verdict (it also runs when the verdict took all the time).</summary>
    private static readonly TimeSpan RelayLookupTimeout = TimeSpan.FromSeconds(15);

    public static Command Create(TextWriter output, TextWriter error)
    {
        var listen = new Option<string[]>("--listen")
        {
            Description = $"Address to listen on, which servers are asked to dial back (repeatable; default {NodeCommand.DefaultListen}); use the address and port a deployed worker would",
            AllowMultipleArgumentsPerToken = false,
        };
        var timeout = CliOptions.TimeoutSeconds(60);
        var json = CliOptions.Json();
        var dht = new DhtOptions();
        var status = new Command("status",
            "Ask peers to dial this machine back (AutoNAT) and print whether it is reachable, the addresses peers see, and relays in the DHT when it is not. "
            + "Exit codes: 0 public, 2 private, 3 no verdict before the timeout, 1 error")
        {
            listen, timeout, json,
        };
        dht.AddTo(status);
        status.SetAction((result, ct) => CliErrors.RunAsync(error, async () =>
        {
            var dhtOptions = dht.Create(result, DhtMode.Client);
            if (dhtOptions.BootstrapPeers.Count == 0)
                throw new FormatException("nat status needs at least one --bootstrap peer to ask (a full multiaddr ending in /p2p/<PeerId>)");
            var addresses = (result.GetValue(listen) is { Length: > 0 } given ? given : [NodeCommand.DefaultListen]).Select(CliOptions.ParseAddress).ToArray();
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(result.GetValue(timeout)), TimeProvider.System);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, deadline.Token);
            using var logging = CliNode.CreateLoggerFactory(LogLevel.Error);
            await using var host = CliNode.CreateHost(KeyPair.Generate(), logging);
            await host.StartAsync(addresses, ct);
            await ConnectAsync(host, dhtOptions.BootstrapPeers, error, linked.Token);
            await using var kademlia = new KademliaDht(host, dhtOptions);
            // More peers to ask than the bootstrap ones: the lookup of our own id connects to some.
            await kademlia.StartAsync(linked.Token);
            await using var client = new AutoNatClient(host, new AutoNatClientOptions { LoggerFactory = logging });
            var verdict = await VerdictAsync(client, linked.Token);
            ct.ThrowIfCancellationRequested();
            IReadOnlyList<DiscoveredPeer> relays = [];
            if (verdict.Reachability != NatReachability.Public)
            {
                using var lookupDeadline = new CancellationTokenSource(RelayLookupTimeout, TimeProvider.System);
                using var lookup = CancellationTokenSource.CreateLinkedTokenSource(ct, lookupDeadline.Token);
                relays = await FindRelaysAsync(kademlia, error, lookup.Token);
            }
            await PrintAsync(output, verdict, Observed(host), relays, result.GetValue(json));
            return verdict.Reachability switch
            {
                NatReachability.Public => PublicCode,
                NatReachability.Private => PrivateCode,
                _ => UndecidedCode,
            };
        }));
        return new Command("nat", "NAT traversal: what AutoNAT concludes about this machine") { status };
    }

    private static async Task ConnectAsync(P2PHost host, IReadOnlyList<Multiaddress> bootstrap, TextWriter error, CancellationToken cancellationToken)
    {
        var connected = 0;
        foreach (var address in bootstrap)
        {
            try
            {
                var connection = await host.ConnectAsync(address, cancellationToken);
                // Identify tells the AutoNAT client that the peer serves it, and where it sees us.
                await host.IdentifyAsync(connection, cancellationToken);
                connected++;
            }
            catch (Exception e) when (e is not OperationCanceledException && CliErrors.Describe(e) is { } reason)
            {
                await error.WriteLineAsync($"warning: bootstrap peer {address}: {reason}");
            }
        }
        if (connected == 0) throw new TransportException("none of the bootstrap peers could be reached, so nobody can be asked");
    }

    /// <summary>Rounds until a verdict; the status so far (unknown) when the time is up.</summary>
    private static async Task<NatStatus> VerdictAsync(AutoNatClient client, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                var status = await client.CheckAsync(cancellationToken);
                if (status.Reachability != NatReachability.Unknown) return status;
                await Task.Delay(RoundPause, TimeProvider.System, cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
            return client.Status;
        }
    }

    private static async Task<IReadOnlyList<DiscoveredPeer>> FindRelaysAsync(KademliaDht kademlia, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            return await kademlia.LookupAsync(RelayService.DiscoveryTopic, cancellationToken);
        }
        catch (Exception e) when (e is OperationCanceledException || CliErrors.Describe(e) is not null)
        {
            await error.WriteLineAsync($"warning: looking relays up in the DHT failed: {CliErrors.Describe(e)}");
            return [];
        }
    }

    /// <summary>The addresses connected peers told us (identify) they see us at, each with how many peers saw it, most seen first.</summary>
    private static List<(Multiaddress Address, int Peers)> Observed(P2PHost host) =>
        host.Connections
            .Select(c => c.RemoteIdentify?.ObservedAddress)
            .OfType<Multiaddress>()
            .Where(a => a.Components.Count > 0)
            .GroupBy(a => a)
            .Select(g => (g.Key, g.Count()))
            .OrderByDescending(p => p.Item2)
            .ThenBy(p => p.Key.ToString(), StringComparer.Ordinal)
            .ToList();

    private static async Task PrintAsync(TextWriter output, NatStatus verdict, List<(Multiaddress Address, int Peers)> observed,
        IReadOnlyList<DiscoveredPeer> relays, bool json)
    {
        var reachability = verdict.Reachability.ToString().ToLowerInvariant();
        if (json)
        {
            await output.WriteLineAsync(JsonSerializer.Serialize(new
            {
                reachability,
                confidence = verdict.Confidence,
                reachedAddress = verdict.ReachedAddress?.ToString(),
                observedAddresses = observed.Select(o => new { address = o.Address.ToString(), peers = o.Peers }),
                relays = relays.Select(r => new { peerId = r.PeerId.ToString(), addrs = r.Addresses.Select(a => a.ToString()) }),
            }));
            return;
        }
        await output.WriteLineAsync($"reachability:       {verdict}");
        await output.WriteLineAsync(observed.Count == 0 ? "observed addresses: none (no peer told us)" : "observed addresses:");
        foreach (var (address, peers) in observed)
            await output.WriteLineAsync($"  {address} (seen by {peers} peer{(peers == 1 ? "" : "s")})");
        if (verdict.Reachability == NatReachability.Public) return;
        await output.WriteLineAsync(relays.Count == 0 ? "relays in the DHT:  none found" : "relays in the DHT:");
        foreach (var relay in relays)
            await output.WriteLineAsync($"  {relay.PeerId} {string.Join(" ", relay.Addresses)}");
    }
}
