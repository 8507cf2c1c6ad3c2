using System.Diagnostics;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Dht.Proto;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Dht;

/// <summary>A 20-node Kademlia network on TCP loopback: the real stack end to end.</summary>
[TestFixture]
[NonParallelizable]
public sealed class DhtTcpNetworkTests
{
    private const int NodeCount = 20;
    private readonly List<(P2PHost Host, KademliaDht Dht)> _nodes = [];
    private readonly List<P2PHost> _impostors = [];
    private CancellationTokenSource _timeout = null!;

    private CancellationToken Token => _timeout.Token;

    [SetUp]
    public void CreateTimeout() => _timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));

    [TearDown]
    public async Task StopAsync()
    {
        foreach (var (host, dht) in _nodes)
        {
            await dht.DisposeAsync();
            await host.DisposeAsync();
        }
        _nodes.Clear();
        foreach (var host in _impostors) await host.DisposeAsync();
        _impostors.Clear();
        _timeout.Dispose();
    }

    private async Task<(P2PHost Host, KademliaDht Dht)> StartNodeAsync(IReadOnlyList<Multiaddress> bootstrap,
        DhtMode mode = DhtMode.Server, int k = 20, TimeSpan? queryTimeout = null)
    {
        var host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], Token);
        var dht = new KademliaDht(host, new KademliaDhtOptions
        {
            BootstrapPeers = bootstrap,
            Mode = mode,
            K = k,
            QueryTimeout = queryTimeout ?? TimeSpan.FromSeconds(5),
        });
        _nodes.Add((host, dht));
        await dht.StartAsync(Token);
        return (host, dht);
    }

    /// <summary>Node 0 first, then the rest bootstrapping from it (a few at a time, like nodes coming up).</summary>
    private async Task<IReadOnlyList<KademliaDht>> StartNetworkAsync(int count, int k = 20)
    {
        var first = await StartNodeAsync([], k: k);
        var bootstrap = first.Host.AdvertisedAddresses;
        for (var i = 1; i < count; i += 4)
        {
            var batch = Enumerable.Range(i, Math.Min(4, count - i)).Select(_ => StartNodeAsync(bootstrap, k: k));
            await Task.WhenAll(batch);
        }
        foreach (var (_, dht) in _nodes) await dht.WaitUntilJoinedAsync(Token);
        return _nodes.Select(n => n.Dht).ToArray();
    }

    [Test]
    public async Task Lookup_KeepsTheAddressesARepliesNames_WithTheScopeTheReplierWasReachedAt()
    {
        // A peer on our own machine may name our loopback, by name too (a DNS name's scope shows only when it is
        // resolved): what its reply names stays dialable at loopback, where a public replier's would not be.
        var (host, dht) = await StartNodeAsync([]);
        var named = KeyPair.Generate().PeerId;
        var address = Multiaddress.Parse("/dns4/localhost/tcp/1");
        var replier = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        _impostors.Add(replier);
        replier.Handle(KademliaDhtOptions.DefaultProtocolId, async (context, token) =>
        {
            var request = await KadMessageCodec.ReadAsync(context.Stream, 4096, 1024, token);
            var reply = new Message { Type = request!.Type };
            reply.CloserPeers.Add(KadMessageCodec.FromPeer(named, [address], connected: false));
            await KadMessageCodec.WriteAsync(context.Stream, reply, token);
        });
        await replier.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], Token);
        await host.ConnectAsync(replier.AdvertisedAddresses[0], Token);
        await host.IdentifyAsync(replier.PeerId, Token);
        Assert.That(dht.RoutingTable.Contains(replier.PeerId), Is.True, "premise: the lookup asks the replier");

        await dht.FindClosestPeersAsync(named.ToByteArray(), Token);

        Assert.That(host.PeerStore.GetAddresses(named), Is.EqualTo(new[] { address }));
        Assert.That(host.PeerStore.NarrowestDialScope(named, address), Is.EqualTo(AddressScope.Loopback));
    }

    [Test]
    public async Task Network_AllNodesJoin_AndRoutingTablesFill()
    {
        var dhts = await StartNetworkAsync(NodeCount);

        Assert.That(dhts.Select(d => d.RoutingTable.Count), Has.All.GreaterThanOrEqualTo(2));
        await TestContext.Out.WriteLineAsync("routing table sizes: " + string.Join(",", dhts.Select(d => d.RoutingTable.Count)));
    }

    /// <remarks>
    /// With k = 20 and 20 nodes every node stores every record, so lookups find the provider locally
    /// (hop 0) and then converge; k = 4 makes records and routing sparse, so lookups route.
    /// </remarks>
    [TestCase(20)]
    [TestCase(4)]
    public async Task Lookup_FindsProviderAnnouncedElsewhere_AndReportsLatency(int k)
    {
        var dhts = await StartNetworkAsync(NodeCount, k);
        var topics = Enumerable.Range(0, 5).Select(i => $"p2pinference/model/test-{i}").ToArray();
        for (var i = 0; i < topics.Length; i++) await dhts[i * 3 + 1].AnnounceAsync(topics[i], Token);

        var latencies = new List<double>();
        var hops = new List<int>();
        var messages = new List<int>();
        for (var i = 0; i < topics.Length; i++)
        {
            var provider = dhts[i * 3 + 1];
            foreach (var asker in dhts.Where(d => d != provider).Take(8))
            {
                var watch = Stopwatch.StartNew();
                var result = await asker.FindProvidersAsync(TopicKey.For(topics[i]), Token);
                watch.Stop();
                Assert.That(result.Providers.Select(p => p.PeerId), Does.Contain(provider.PeerId), $"topic {topics[i]} from {asker.PeerId}");
                var found = result.Providers.First(p => p.PeerId == provider.PeerId);
                Assert.That(found.Addresses, Is.Not.Empty);
                latencies.Add(watch.Elapsed.TotalMilliseconds);
                hops.Add(result.Stats.HopsToResult);
                messages.Add(result.Stats.RequestsSent);
            }
        }
        latencies.Sort();
        await TestContext.Out.WriteLineAsync(
            $"DHT lookup over TCP loopback, {NodeCount} nodes, k={k}, {latencies.Count} lookups: " +
            $"p50 {Percentile(latencies, 50):F1} ms, p90 {Percentile(latencies, 90):F1} ms, max {latencies[^1]:F1} ms; " +
            $"hops to provider mean {hops.Average():F2} (max {hops.Max()}, 0 = already held locally), " +
            $"requests per lookup mean {messages.Average():F1} (max {messages.Max()}); " +
            $"routing table sizes mean {dhts.Average(d => d.RoutingTable.Count):F1}");
    }

    [Test]
    public async Task Lookup_FindsAllProvidersOfSharedTopic()
    {
        var dhts = await StartNetworkAsync(NodeCount);
        var providers = new[] { dhts[2], dhts[9], dhts[15] };
        foreach (var p in providers) await p.AnnounceAsync("p2pinference/processor", Token);

        var found = await dhts[19].LookupAsync("p2pinference/processor", Token);

        Assert.That(found.Select(p => p.PeerId), Is.SupersetOf(providers.Select(p => p.PeerId)));
    }

    [Test]
    public async Task Unannounce_StopsLocalAnswers_AndOthersKeepTheRecordUntilTtl()
    {
        var dhts = await StartNetworkAsync(8);
        // ADD_PROVIDER has no reply: announcing returns once sent, so wait until another node has stored a copy.
        var storedElsewhere = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        foreach (var other in dhts.Where(d => d != dhts[3]))
            other.Providers.RecordAdded += (_, provider) => { if (provider == dhts[3].PeerId) storedElsewhere.TrySetResult(); };
        await dhts[3].AnnounceAsync("p2pinference/auth", Token);
        await storedElsewhere.Task.WaitAsync(Token);
        await dhts[3].UnannounceAsync("p2pinference/auth", Token);

        Assert.That(dhts[3].Providers.Get(TopicKey.For("p2pinference/auth")), Is.Empty);
        // No withdraw message exists in kad: the copies on other nodes live until their TTL.
        var found = await dhts[5].LookupAsync("p2pinference/auth", Token);
        Assert.That(found.Select(p => p.PeerId), Does.Contain(dhts[3].PeerId));
    }

    [Test]
    public async Task FindPeer_ReturnsAddressesOfDistantPeer()
    {
        var dhts = await StartNetworkAsync(NodeCount);
        var target = _nodes[17];

        var found = await dhts[4].FindPeerAsync(target.Dht.PeerId, Token);

        Assert.That(found, Is.Not.Null);
        Assert.That(found!.Addresses, Does.Contain(target.Host.ListenAddresses[0]));
    }

    [Test]
    public async Task PutValue_ThenGetValueFromOtherNode_ReturnsValue()
    {
        var dhts = await StartNetworkAsync(10);
        var key = "/test/greeting"u8.ToArray();

        var stored = await dhts[1].PutValueAsync(key, "hello"u8.ToArray(), Token);
        var value = await dhts[8].GetValueAsync(key, Token);

        Assert.That(stored, Is.GreaterThan(0));
        Assert.That(value, Is.EqualTo("hello"u8.ToArray()));
    }

    [Test]
    public async Task ClientNode_CanLookUp_ButIsNotInOthersRoutingTables()
    {
        var dhts = await StartNetworkAsync(6);
        await dhts[2].AnnounceAsync("p2pinference/gateway", Token);
        var client = await StartNodeAsync(_nodes[0].Host.AdvertisedAddresses, DhtMode.Client);
        await client.Dht.WaitUntilJoinedAsync(Token);

        var found = await client.Dht.LookupAsync("p2pinference/gateway", Token);

        Assert.That(found.Select(p => p.PeerId), Does.Contain(dhts[2].PeerId));
        Assert.That(dhts.Select(d => d.RoutingTable.Contains(client.Dht.PeerId)), Has.All.False);
    }

    [Test]
    public async Task Lookup_Succeeds_WhenSomePeersAreDead()
    {
        var dhts = await StartNetworkAsync(12);
        await dhts[6].AnnounceAsync("p2pinference/model/alive", Token);
        // Stop three nodes without telling anyone: their table entries now point at closed ports.
        foreach (var i in new[] { 3, 8, 10 })
        {
            await _nodes[i].Dht.DisposeAsync();
            await _nodes[i].Host.DisposeAsync();
        }

        var found = await dhts[11].LookupAsync("p2pinference/model/alive", Token);

        Assert.That(found.Select(p => p.PeerId), Does.Contain(dhts[6].PeerId));
    }

    /// <summary>A host that claims our kad protocol and answers each request with <paramref name="answer"/>.</summary>
    private async Task<P2PHost> StartImpostorAsync(Multiaddress bootstrap, StreamHandler answer)
    {
        var host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        host.Handle(KademliaDhtOptions.DefaultProtocolId, answer);
        await host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], Token);
        _impostors.Add(host);
        await host.ConnectAsync(bootstrap, Token);
        return host;
    }

    [Test]
    public async Task Lookup_Succeeds_WhenPeersAnswerGarbageOrNever()
    {
        var dhts = await StartNetworkAsync(10);
        await dhts[4].AnnounceAsync("p2pinference/model/robust", Token);
        var bootstrap = _nodes[0].Host.AdvertisedAddresses[0];
        var garbage = await StartImpostorAsync(bootstrap, async (context, ct) =>
        {
            await context.Stream.ReadAtLeastAsync(new byte[1024], 1, throwOnEndOfStream: false, ct);
            await context.Stream.WriteAsync(new byte[] { 0x05, 0xff, 0xff, 0xff, 0xff, 0xff }, ct);
        });
        var silent = await StartImpostorAsync(bootstrap, async (_, ct) => await Task.Delay(Timeout.Infinite, ct));
        // A fresh node bootstrapping from node 0 learns the impostors from it and must get past them.
        var asker = await StartNodeAsync([bootstrap], queryTimeout: TimeSpan.FromSeconds(1));

        var result = await asker.Dht.FindProvidersAsync(TopicKey.For("p2pinference/model/robust"), Token);

        Assert.That(result.Providers.Select(p => p.PeerId), Does.Contain(dhts[4].PeerId));
        Assert.That(asker.Dht.RoutingTable.Contains(garbage.PeerId), Is.False, "a peer answering garbage is not kept");
        Assert.That(asker.Dht.RoutingTable.Contains(silent.PeerId), Is.False, "a peer never answering is not kept");
        await TestContext.Out.WriteLineAsync($"lookup past impostors: {result.Stats}");
    }

    [Test]
    public async Task OversizedInboundMessage_ResetsThatStream_AndNodeKeepsServing()
    {
        var dhts = await StartNetworkAsync(3);
        var (target, _) = _nodes[1];
        var attacker = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        _impostors.Add(attacker);
        await attacker.ConnectAsync(target.AdvertisedAddresses[0], Token);

        var stream = await attacker.OpenStreamAsync(target.PeerId, KademliaDhtOptions.DefaultProtocolId, Token);
        var prefix = new byte[10];
        var n = P2PInference.Facilities.Encoding.Varint.Write(prefix, 1UL << 40);
        await stream.WriteAsync(prefix.AsMemory(0, n), Token);
        var answered = 0;
        try
        {
            var buffer = new byte[16];
            int read;
            while ((read = await stream.ReadAsync(buffer, Token)) > 0) answered += read;
        }
        catch (IOException)
        {
            // Reset: the expected outcome.
        }
        Assert.That(answered, Is.Zero, "the stream is reset or closed, never answered");

        var closest = await dhts[0].FindClosestPeersAsync(target.PeerId.ToByteArray(), Token);
        Assert.That(closest.ClosestPeers, Does.Contain(target.PeerId));
    }

    private static double Percentile(List<double> sorted, int p) =>
        sorted[Math.Clamp((int)Math.Ceiling(p / 100.0 * sorted.Count) - 1, 0, sorted.Count - 1)];
}
