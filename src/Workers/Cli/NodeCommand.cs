using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.Facilities.Net.Protocols.Relay;

namespace P2PInference.Workers.Cli;

/// <summary>
/// <c>p2pinference node</c>: runs a libp2p node until SIGINT or SIGTERM. It serves AutoNAT
/// dial-backs and asks its peers about itself; when AutoNAT reaches or changes its conclusion it
/// prints a <c>nat:</c> line (or a JSON <c>{"event":"nat",...}</c> line). With <c>--relay-service</c> it
/// relays for others (circuit relay v2, default limits); with <c>--relay MA</c> it reserves on that
/// relay and listens through it, and the circuit address is printed with its other addresses.
/// Unless <c>--no-hole-punch</c>, it turns relayed connections into direct ones (DCUtR) and prints a
/// <c>dcutr:</c> line for each attempt: <c>dcutr: direct with PEER at ADDR</c> or
/// <c>dcutr: still relayed with PEER: REASON</c> (JSON: <c>{"event":"dcutr",...}</c>).
/// </summary>
internal static class NodeCommand
{
    public const string DefaultListen = "/ip4/127.0.0.1/tcp/0";

    public static Command Create(TextWriter output, TextWriter error)
    {
        var listen = new Option<string[]>("--listen")
        {
            Description = $"Address to listen on (repeatable; default {DefaultListen})",
            AllowMultipleArgumentsPerToken = false,
        };
        var announce = new Option<string[]>("--announce")
        {
            Description = "Address peers are told to dial this node at, before its listen addresses: a DNS name, the public IP of a forwarded port or a 1:1 NAT (repeatable)",
            AllowMultipleArgumentsPerToken = false,
        };
        var keyFile = CliOptions.KeyFile();
        var json = CliOptions.Json();
        var dht = new DhtOptions();
        var provide = new Option<string[]>("--provide") { Description = "Topic to announce in the DHT and keep re-announcing (repeatable)" };
        var client = new Option<bool>("--dht-client") { Description = "Run the DHT in client mode (query others, serve no one)" };
        var natAllowPrivate = new Option<bool>("--autonat-allow-private")
        {
            Description = "Dial back loopback and private addresses for peers' AutoNAT checks (a private cluster, tests on one machine); off, as in js and go, since it proves only local reachability",
        };
        var relayService = new Option<bool>("--relay-service")
        {
            Description = "Relay for others (circuit relay v2 hop: reservations of an hour, relayed connections of 2 minutes and 128 KiB each way)",
        };
        var relays = new Option<string[]>("--relay")
        {
            Description = "Reserve a slot on the relay at this address (ending in /p2p/RELAY) and be reachable through it (repeatable)",
            AllowMultipleArgumentsPerToken = false,
        };
        var noHolePunch = new Option<bool>("--no-hole-punch") { Description = "Do not turn relayed connections into direct ones (DCUtR)" };
        var holePunchAllowPrivate = CliOptions.HolePunchAllowPrivate();
        var command = new Command("node", "Run a node (identify, ping, Kademlia DHT, AutoNAT, circuit relay, DCUtR) until interrupted")
        {
            listen, announce, keyFile, json, provide, client, natAllowPrivate, relayService, relays, noHolePunch, holePunchAllowPrivate,
        };
        dht.AddTo(command);
        command.SetAction((result, ct) => CliErrors.RunAsync(error, async () =>
        {
            var addresses = (result.GetValue(listen) is { Length: > 0 } given ? given : [DefaultListen])
                .Select(CliOptions.ParseAddress).ToArray();
            var path = result.GetValue(keyFile);
            var identity = path is null ? KeyPair.Generate() : KeyFile.LoadOrCreate(path);
            using var logging = CliNode.CreateLoggerFactory(LogLevel.Warning);
            var announced = (result.GetValue(announce) ?? []).Select(CliOptions.ParseAddress).ToArray();
            foreach (var address in announced)
            {
                if (HostOptions.AnnounceAddressProblem(address) is { } problem) throw new FormatException($"--announce '{address}' {problem}");
            }
            await using var host = CliNode.CreateHost(identity, logging, announced);
            using var natServer = new AutoNatServer(host, new AutoNatServerOptions
            {
                AllowPrivateAddresses = result.GetValue(natAllowPrivate),
                LoggerFactory = logging,
            });
            using var relay = result.GetValue(relayService) ? new RelayService(host, new RelayServiceOptions { LoggerFactory = logging }) : null;
            var jsonOutput = result.GetValue(json);
            await using var dcutr = result.GetValue(noHolePunch) ? null : CliNode.EnableHolePunching(host, logging, result.GetValue(holePunchAllowPrivate));
            if (dcutr is not null) dcutr.Completed += outcome => WriteHolePunch(output, outcome, jsonOutput);
            await host.StartAsync(addresses, ct);
            var circuitSuffix = Multiaddress.Parse("/p2p-circuit");
            var relayAddresses = (result.GetValue(relays) ?? []).Select(CliOptions.ParseAddress).ToArray();
            foreach (var relayAddress in relayAddresses)
            {
                if (relayAddress.PeerId is null)
                    throw new FormatException($"'{relayAddress}' does not end in /p2p/<PeerId>; a relay is reserved on as that peer");
            }
            await host.StartAsync(relayAddresses.Select(a => a.Encapsulate(circuitSuffix)), ct);
            await using var kademlia = new KademliaDht(host, dht.Create(result, result.GetValue(client) ? DhtMode.Client : DhtMode.Server));
            await kademlia.StartAsync(ct);
            foreach (var topic in result.GetValue(provide) ?? [])
                await kademlia.AnnounceAsync(topic, ct);
            // Caught from before the addresses are printed: whoever reads them may signal at once.
            using var shutdown = ShutdownSignal.Listen();
            var advertised = host.AdvertisedAddresses.Select(a => a.ToString()).ToArray();
            if (result.GetValue(json))
                await output.WriteLineAsync(JsonSerializer.Serialize(new { peerId = host.PeerId.ToString(), addrs = advertised }));
            else
                foreach (var a in advertised) await output.WriteLineAsync(a);
            await output.FlushAsync(ct);
            await using var nat = new AutoNatClient(host, new AutoNatClientOptions { LoggerFactory = logging });
            nat.StatusChanged += status => WriteNatStatus(output, status, jsonOutput);
            nat.Start();
            await shutdown.WaitAsync(ct);
            return 0;
        }));
        return command;
    }

    /// <summary>Raised on the AutoNAT client's round, so it writes synchronously; the console writer is thread-safe.</summary>
    private static void WriteNatStatus(TextWriter output, NatStatus status, bool json)
    {
        var reachability = status.Reachability.ToString().ToLowerInvariant();
        output.WriteLine(json
            ? JsonSerializer.Serialize(new { @event = "nat", reachability, confidence = status.Confidence, reachedAddress = status.ReachedAddress?.ToString() })
            : $"nat: {status}");
        output.Flush();
    }

    /// <summary>Raised where the hole punch ended, so it writes synchronously; the console writer is thread-safe.</summary>
    private static void WriteHolePunch(TextWriter output, HolePunchOutcome outcome, bool json)
    {
        output.WriteLine(json
            ? JsonSerializer.Serialize(new
            {
                @event = "dcutr",
                peerId = outcome.Peer.ToString(),
                direct = outcome.IsDirect,
                address = outcome.Address?.ToString(),
                reason = outcome.Reason,
                unilateral = outcome.Unilateral,
                attempts = outcome.Attempts,
            })
            : $"dcutr: {outcome}");
        output.Flush();
    }
}
