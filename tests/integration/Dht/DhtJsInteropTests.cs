using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Tests.Integration.Interop;

namespace P2PInference.Tests.Integration.Dht;

/// <summary>Our Kademlia DHT and js-libp2p's @libp2p/kad-dht in one network, on our protocol id.</summary>
[TestFixture]
[NonParallelizable]
public sealed class DhtJsInteropTests
{
    private readonly List<(P2PHost Host, KademliaDht Dht)> _nodes = [];
    private CancellationTokenSource _timeout = null!;
    private JsPeer? _js;

    private CancellationToken Token => _timeout.Token;

    [SetUp]
    public void CreateTimeout() => _timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));

    [TearDown]
    public async Task StopAsync()
    {
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed && _js is not null)
            await TestContext.Out.WriteLineAsync("js-libp2p stderr:\n" + _js.Diagnostics);
        if (_js is not null) await _js.DisposeAsync();
        _js = null;
        foreach (var (host, dht) in _nodes)
        {
            await dht.DisposeAsync();
            await host.DisposeAsync();
        }
        _nodes.Clear();
        _timeout.Dispose();
    }

    private Task<(P2PHost Host, KademliaDht Dht)> StartNodeAsync(params Multiaddress[] bootstrap) =>
        StartNodeAsync(KademliaDhtOptions.DefaultProtocolId, bootstrap);

    private async Task<(P2PHost Host, KademliaDht Dht)> StartNodeAsync(string protocol, params Multiaddress[] bootstrap)
    {
        var host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], Token);
        var dht = new KademliaDht(host, new KademliaDhtOptions { BootstrapPeers = bootstrap, ProtocolId = protocol });
        _nodes.Add((host, dht));
        await dht.StartAsync(Token);
        return (host, dht);
    }

    /// <summary>Our nodes A and B (B bootstrapped from A), and a js node that dialed A only.</summary>
    private async Task<((P2PHost Host, KademliaDht Dht) A, (P2PHost Host, KademliaDht Dht) B, JsPeer Js)> MixedNetworkAsync()
    {
        var a = await StartNodeAsync();
        var b = await StartNodeAsync(a.Host.AdvertisedAddresses[0]);
        _js = await JsPeer.StartAsync(["--dht", "--dht-protocol", KademliaDhtOptions.DefaultProtocolId], Token);
        var jsId = PeerId.Parse(_js.PeerId);
        var jsAdded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Dht.RoutingTable.PeerAdded += p =>
        {
            if (p == jsId) jsAdded.TrySetResult();
        };
        await _js.SendAsync(new { cmd = "dial", addr = a.Host.AdvertisedAddresses[0].ToString() }, Token);
        // Each side adds the other only after identify showed it serves kad.
        await _js.SendAsync(new { cmd = "waitRoutingTable", min = 1, timeoutMs = 10_000 }, Token);
        if (!a.Dht.RoutingTable.Contains(jsId)) await jsAdded.Task.WaitAsync(Token);
        return (a, b, _js);
    }

    [Test]
    public async Task JsRoutingTable_ContainsOurNode_AfterDial()
    {
        var (a, _, js) = await MixedNetworkAsync();

        var table = await js.SendAsync(new { cmd = "routingTable" }, Token);

        Assert.That(table["peers"]!.AsArray().Select(p => (string)p!), Does.Contain(a.Dht.PeerId.ToString()));
    }

    [Test]
    public async Task JsProvides_WeFindJsWithItsAddress()
    {
        var (a, b, js) = await MixedNetworkAsync();
        await js.SendAsync(new { cmd = "provide", topic = "p2pinference/model/js", timeoutMs = 10_000 }, Token);
        // A node that joins afterwards holds no record: it must ask the network.
        var c = await StartNodeAsync(b.Host.AdvertisedAddresses[0]);

        var found = await c.Dht.FindProvidersAsync(P2PInference.Facilities.Discovery.TopicKey.For("p2pinference/model/js"), Token);

        var jsId = PeerId.Parse(js.PeerId);
        Assert.That(found.Providers.Select(p => p.PeerId), Does.Contain(jsId));
        var jsAddress = Multiaddress.Parse(js.Addrs[0]).WithoutPeerId();
        Assert.That(found.Providers.First(p => p.PeerId == jsId).Addresses, Does.Contain(jsAddress));
        Assert.That(a.Dht.Providers.Get(P2PInference.Facilities.Discovery.TopicKey.For("p2pinference/model/js")).Select(r => r.Provider),
            Does.Contain(jsId), "js's ADD_PROVIDER reached our node A");
    }

    [Test]
    public async Task WeProvide_JsFindProvidersFindsUs()
    {
        var (_, b, js) = await MixedNetworkAsync();
        await b.Dht.AnnounceAsync("p2pinference/processor", Token);

        var answer = await js.SendAsync(new { cmd = "findProviders", topic = "p2pinference/processor", timeoutMs = 10_000 }, Token);

        var providers = answer["providers"]!.AsArray();
        var us = providers.FirstOrDefault(p => (string)p!["peerId"]! == b.Dht.PeerId.ToString());
        Assert.That(us, Is.Not.Null, answer.ToJsonString());
        var addrs = us!["addrs"]!.AsArray().Select(x => Multiaddress.Parse((string)x!).WithoutPeerId());
        Assert.That(addrs, Does.Contain(b.Host.ListenAddresses[0]));
    }

    [Test]
    public async Task IpfsProtocolId_JsAndWeFindEachOthersProviders()
    {
        const string ipfsKad = "/ipfs/kad/1.0.0";
        var a = await StartNodeAsync(ipfsKad);
        _js = await JsPeer.StartAsync(["--dht", "--dht-protocol", ipfsKad], Token);
        var jsId = PeerId.Parse(_js.PeerId);
        await _js.SendAsync(new { cmd = "dial", addr = a.Host.AdvertisedAddresses[0].ToString() }, Token);
        await _js.SendAsync(new { cmd = "waitRoutingTable", min = 1, timeoutMs = 10_000 }, Token);
        var b = await StartNodeAsync(ipfsKad, a.Host.AdvertisedAddresses[0]);
        await b.Dht.AnnounceAsync("p2pinference/processor", Token);
        await _js.SendAsync(new { cmd = "provide", topic = "p2pinference/model/js", timeoutMs = 10_000 }, Token);

        var jsFound = await _js.SendAsync(new { cmd = "findProviders", topic = "p2pinference/processor", timeoutMs = 10_000 }, Token);
        var weFound = await b.Dht.LookupAsync("p2pinference/model/js", Token);

        Assert.That(jsFound["providers"]!.AsArray().Select(p => (string)p!["peerId"]!), Does.Contain(b.Dht.PeerId.ToString()));
        Assert.That(weFound.Select(p => p.PeerId), Does.Contain(jsId));
    }

    [Test]
    public async Task JsFindPeer_OfOurNodeItNeverMet_IsAnsweredByOurFindNode()
    {
        var (_, b, js) = await MixedNetworkAsync();

        var answer = await js.SendAsync(new { cmd = "findPeer", peerId = b.Dht.PeerId.ToString(), timeoutMs = 10_000 }, Token);

        var addrs = answer["addrs"]!.AsArray().Select(x => Multiaddress.Parse((string)x!).WithoutPeerId());
        Assert.That(addrs, Does.Contain(b.Host.ListenAddresses[0]));
    }

    [Test]
    public async Task WeFindPeer_JsNodeOurPeerNeverMet_ThroughMixedTables()
    {
        var (_, b, js) = await MixedNetworkAsync();
        var jsId = PeerId.Parse(js.PeerId);
        Assert.That(b.Host.GetConnection(jsId), Is.Null);

        var found = await b.Dht.FindPeerAsync(jsId, Token);

        Assert.That(found, Is.Not.Null);
        Assert.That(found!.Addresses, Does.Contain(Multiaddress.Parse(js.Addrs[0]).WithoutPeerId()));
    }

    [Test]
    public async Task OurFindNode_ToJs_ReturnsOurOtherNode()
    {
        var (a, b, js) = await MixedNetworkAsync();
        // js learned B through its own lookups (its self-lookup on joining asked A); ask js directly.
        await js.SendAsync(new { cmd = "findPeer", peerId = b.Dht.PeerId.ToString(), timeoutMs = 10_000 }, Token);
        var jsId = PeerId.Parse(js.PeerId);

        var closest = await a.Dht.FindClosestPeersAsync(b.Dht.PeerId.ToByteArray(), Token);

        Assert.That(closest.ClosestPeers, Does.Contain(b.Dht.PeerId).And.Contain(jsId));
    }
}
