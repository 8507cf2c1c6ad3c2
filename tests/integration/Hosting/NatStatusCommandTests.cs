using System.Text.Json;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Workers.Cli;

namespace P2PInference.Tests.Integration.Hosting;

/// <summary>
/// <c>p2pinference nat status</c> against three nodes on TCP loopback (AutoNAT servers and a DHT, one
/// of them a relay announced there). On loopback every dial-back succeeds, so the verdict is public;
/// servers that refuse private addresses (the default) leave it undecided, and the relays are listed.
/// </summary>
[CancelAfter(120_000)]
public sealed class NatStatusCommandTests
{
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<IDisposable> _services = [];

    [TearDown]
    public async Task TearDown()
    {
        foreach (var service in _services) service.Dispose();
        _owned.Reverse();
        foreach (var owned in _owned) await owned.DisposeAsync();
        _owned.Clear();
        _services.Clear();
    }

    /// <summary>Three nodes, each an AutoNAT server and a DHT server joined through the first; the last relays and says so in the DHT.</summary>
    private async Task<(Multiaddress Bootstrap, PeerId Relay)> NodesAsync(bool allowPrivate, CancellationToken cancellationToken)
    {
        Multiaddress? bootstrap = null;
        PeerId? relay = null;
        for (var i = 0; i < 3; i++)
        {
            var host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new CircuitRelayTransport(), new TcpTransport()] });
            _owned.Add(host);
            await host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], cancellationToken);
            _services.Add(new AutoNatServer(host, new AutoNatServerOptions { AllowPrivateAddresses = allowPrivate }));
            var dht = new KademliaDht(host, new KademliaDhtOptions { BootstrapPeers = bootstrap is null ? [] : [bootstrap] });
            _owned.Add(dht);
            await dht.StartAsync(cancellationToken);
            bootstrap ??= host.AdvertisedAddresses[0];
            if (i == 2)
            {
                _services.Add(new RelayService(host));
                await dht.AnnounceAsync(RelayService.DiscoveryTopic, cancellationToken);
                relay = host.PeerId;
            }
        }
        return (bootstrap!, relay!);
    }

    [Test]
    public async Task NatStatus_OnLoopback_SaysPublic_ShowsTheObservedAddress_AndExits0(CancellationToken cancellationToken)
    {
        var (bootstrap, _) = await NodesAsync(allowPrivate: true, cancellationToken);
        var output = new StringWriter();
        var error = new StringWriter();

        var code = await CliApp.RunAsync(["nat", "status", "--bootstrap", bootstrap.ToString(), "--timeout", "60"], output, error);

        Assert.That(code, Is.EqualTo(NatCommand.PublicCode), error.ToString());
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        // Public once 3 probes agree; probes still in flight when it is decided may add to it before the print (at most 2 × 3).
        Assert.That(lines[0], Does.StartWith("reachability:").And.Match(@"public \(confidence [3-6], reached at /ip4/127\.0\.0\.1/tcp/\d+\)"));
        Assert.That(lines[1], Is.EqualTo("observed addresses:"));
        Assert.That(lines[2], Does.StartWith("/ip4/127.0.0.1/tcp/").And.Contain("(seen by"));
        Assert.That(output.ToString(), Does.Not.Contain("relays in the DHT"), "a public node needs no relay");
    }

    [Test]
    public async Task NatStatus_WhenNoServerMayDialLoopback_IsUndecided_ListsTheDhtsRelays_AndExits3(CancellationToken cancellationToken)
    {
        var (bootstrap, relay) = await NodesAsync(allowPrivate: false, cancellationToken);
        var output = new StringWriter();
        var error = new StringWriter();

        var code = await CliApp.RunAsync(["nat", "status", "--bootstrap", bootstrap.ToString(), "--timeout", "6", "--json"], output, error);

        Assert.That(code, Is.EqualTo(NatCommand.UndecidedCode), error.ToString());
        using var answer = JsonDocument.Parse(output.ToString());
        var root = answer.RootElement;
        Assert.That(root.GetProperty("reachability").GetString(), Is.EqualTo("unknown"));
        Assert.That(root.GetProperty("observedAddresses").EnumerateArray().Select(a => a.GetProperty("address").GetString()),
            Has.Some.StartsWith("/ip4/127.0.0.1/tcp/"));
        var relays = root.GetProperty("relays").EnumerateArray().ToArray();
        Assert.That(relays.Select(r => r.GetProperty("peerId").GetString()), Is.EqualTo(new[] { relay.ToString() }));
        Assert.That(relays[0].GetProperty("addrs").EnumerateArray().Select(a => a.GetString()), Has.Some.StartsWith("/ip4/127.0.0.1/tcp/"));
    }

    [Test]
    public async Task NatStatus_WithoutBootstrapPeers_SaysWhatIsMissing_AndExits1()
    {
        var error = new StringWriter();

        var code = await CliApp.RunAsync(["nat", "status"], new StringWriter(), error);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error.ToString(), Does.Contain("needs at least one --bootstrap peer"));
    }

    [Test]
    public async Task NatStatus_WhenNoBootstrapPeerAnswers_SaysSo_AndExits1()
    {
        var nobody = $"/ip4/127.0.0.1/tcp/1/p2p/{KeyPair.Generate().PeerId}";
        var error = new StringWriter();

        var code = await CliApp.RunAsync(["nat", "status", "--bootstrap", nobody, "--timeout", "10"], new StringWriter(), error);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error.ToString(), Does.Contain($"warning: bootstrap peer {nobody}").And.Contain("none of the bootstrap peers could be reached"));
    }
}
