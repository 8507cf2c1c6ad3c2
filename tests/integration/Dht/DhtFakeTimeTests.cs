using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Dht.Proto;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Dht;

/// <summary>The DHT's timers (re-announce, expiry) on the simulation executor, over the in-memory network.</summary>
[TestFixture]
public sealed class DhtFakeTimeTests
{
    private static readonly TimeSpan Ttl = TimeSpan.FromMinutes(10);
    private readonly List<(P2PHost Host, KademliaDht Dht)> _nodes = [];
    private SimulationExecutor _sim = null!;
    private SimulationClock _time = null!;
    private InMemoryNetwork _network = null!;

    /// <summary>Runs a test on a new simulation, with the network on its clock; stops the nodes inside the run.</summary>
    private void Simulate(Func<CancellationToken, Task> body) => SimulationTest.Run(async sim =>
    {
        _sim = sim;
        _time = sim.Clock;
        _network = new InMemoryNetwork(_time, sim.Seed);
        try
        {
            await body(CancellationToken.None);
        }
        finally
        {
            foreach (var (host, dht) in _nodes)
            {
                await dht.DisposeAsync();
                await host.DisposeAsync();
            }
            _nodes.Clear();
        }
    });

    private async Task<KademliaDht> StartNodeAsync(string name, CancellationToken ct, Func<ITransport, ITransport>? wrapTransport = null,
        KeyPair? identity = null, long maxProviderStoreBytes = ProviderStore.DefaultMaxBytes, int maxKnownPeers = PeerStore.DefaultCapacity)
    {
        var transport = _network.CreateTransport(name);
        var host = new P2PHost(new HostOptions
        {
            Identity = identity ?? IdentityOf(name), RandomSource = new SeededRandomSource(_sim.CreateRandom("entropy", name)),
            Transports = [wrapTransport is null ? transport : wrapTransport(transport)], TimeProvider = _time, MaxKnownPeers = maxKnownPeers,
        });
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], ct);
        var dht = new KademliaDht(host, new KademliaDhtOptions
        {
            TimeProvider = _time,
            ProviderRecordTtl = Ttl,
            ReannounceInterval = TimeSpan.FromMinutes(4),
            RefreshInterval = TimeSpan.FromHours(10),
            QueryTimeout = TimeSpan.FromMinutes(1),
            LookupTimeout = TimeSpan.FromMinutes(5),
            BootstrapPeers = _nodes.Count == 0 ? [] : [_nodes[0].Host.AdvertisedAddresses[0]],
            RandomSeed = 1,
            MaxProviderStoreBytes = maxProviderStoreBytes,
        });
        _nodes.Add((host, dht));
        await dht.StartAsync(ct);
        return dht;
    }

    /// <summary>The key pair <see cref="StartNodeAsync"/> gives the node called <paramref name="name"/>: the seed decides it.</summary>
    private KeyPair IdentityOf(string name) => KeyPair.FromRandom(_sim.CreateRandom("identity", name));

    private async Task<IReadOnlyList<KademliaDht>> StartNetworkAsync(int count, CancellationToken ct)
    {
        var list = new List<KademliaDht>();
        for (var i = 0; i < count; i++) list.Add(await StartNodeAsync($"n{i}", ct));
        return list;
    }

    /// <summary>Two nodes, n1 joined through n0, and then <paramref name="oneWay"/> of latency each way between them.</summary>
    private async Task<IReadOnlyList<KademliaDht>> StartPairAsync(TimeSpan oneWay, CancellationToken ct)
    {
        var dhts = await StartNetworkAsync(2, ct);
        _network.Link("n0", "n1").Latency = oneWay;
        _network.Link("n1", "n0").Latency = oneWay;
        return dhts;
    }

    /// <summary>Moves virtual time by the re-announce interval; the round it triggers has run when this returns.</summary>
    private async Task AdvanceThroughReannounceAsync(KademliaDht dht)
    {
        var rounds = 0;
        void OnDone() => rounds++;
        dht.ReannounceCompleted += OnDone;
        await _time.AdvanceAsync(TimeSpan.FromMinutes(4));
        dht.ReannounceCompleted -= OnDone;
        Assert.That(rounds, Is.EqualTo(1), "one re-announce round ran");
    }

    [Test]
    public void Announcement_OutlivesTtl_WhileReannounced() => Simulate(async ct =>
    {
        var dhts = await StartNetworkAsync(4, ct);
        await dhts[1].AnnounceAsync("p2pinference/auth", ct);

        for (var i = 0; i < 5; i++) await AdvanceThroughReannounceAsync(dhts[1]); // 20 min > TTL

        var found = await dhts[3].LookupAsync("p2pinference/auth", ct);
        Assert.That(found.Select(p => p.PeerId), Does.Contain(dhts[1].PeerId));
    });

    [Test]
    public void Announcement_LapsesEverywhere_OneTtlAfterUnannounce() => Simulate(async ct =>
    {
        var dhts = await StartNetworkAsync(4, ct);
        await dhts[1].AnnounceAsync("p2pinference/auth", ct);
        Assert.That((await dhts[2].LookupAsync("p2pinference/auth", ct)).Select(p => p.PeerId), Does.Contain(dhts[1].PeerId));

        await dhts[1].UnannounceAsync("p2pinference/auth", ct);
        await _time.AdvanceAsync(Ttl);

        Assert.That(await dhts[2].LookupAsync("p2pinference/auth", ct), Is.Empty);
        Assert.That(dhts.Select(d => d.Providers.KeyCount), Has.All.Zero, "the sweep removed the expired records");
    });

    [Test]
    public void Announcement_MadeWhileTheNetworkWasSmall_IsFoundOnceMoreThanKServersRun_BeforeAnyReannouncement() => Simulate(async ct =>
    {
        // The bootstrap node and the announcer are the two farthest from the key of 2 + 38 servers. The
        // record goes to the bootstrap node when it is announced; a lookup later converges on the k = 20
        // closest and asks neither. Only replication to newcomers closer to the key makes it findable.
        const string topic = "p2pinference/auth";
        var key = KadId.FromKey(TopicKey.For(topic));
        var byDistance = Enumerable.Range(0, 40).Select(i => $"n{i}")
            .Select(name => (Name: name, Id: KadId.FromPeer(IdentityOf(name).PeerId)))
            .OrderBy(n => n.Id, Comparer<KadId>.Create(key.CompareDistance))
            .Select(n => n.Name).ToArray();
        var bootstrap = await StartNodeAsync(byDistance[^1], ct);
        var announcer = await StartNodeAsync(byDistance[^2], ct);
        await announcer.AnnounceAsync(topic, ct);
        var servers = new List<KademliaDht>();
        foreach (var name in byDistance[..^2]) servers.Add(await StartNodeAsync(name, ct));
        // The node closest to the key looks: the k closest peers it knows are the k closest there are, so
        // whatever order the replies come in, the lookup never needs the two farthest.
        var looker = servers[0];
        var served = (bootstrap.RequestsServed, announcer.RequestsServed);

        var found = await looker.LookupAsync(topic, ct);

        Assert.That((bootstrap.RequestsServed, announcer.RequestsServed), Is.EqualTo(served),
            "premise: the lookup asked neither peer that held the record after its announcement");
        Assert.That(found.Select(p => p.PeerId), Does.Contain(announcer.PeerId));
        Assert.That(_time.Elapsed, Is.LessThan(TimeSpan.FromMinutes(4)), "found before the first re-announcement");
    });

    [Test]
    public void WaitUntilJoined_CompletesAfterBootstrap() => Simulate(async ct =>
    {
        var first = await StartNodeAsync("n0", ct);
        var joining = first.WaitUntilJoinedAsync(ct);
        Assert.That(joining.IsCompleted, Is.False, "alone, the first node has not joined");

        var second = await StartNodeAsync("n1", ct);

        await second.WaitUntilJoinedAsync(ct);
        await joining;
        Assert.That(second.RoutingTable.Contains(first.PeerId), Is.True);
    });

    [Test]
    public void Request_OnAnOpenConnection_TakesOneRoundTrip() => Simulate(async ct =>
    {
        var dhts = await StartPairAsync(oneWay: TimeSpan.FromMilliseconds(50), ct);
        var started = _time.Elapsed;

        var result = await dhts[1].FindClosestPeersAsync(dhts[0].PeerId.ToByteArray(), ct);

        Assert.That(result.Stats.RequestsSent, Is.EqualTo(1), "premise: one peer to ask, on the connection it bootstrapped over");
        // Two round trips if the request waited for the listener's answer to its protocol proposal.
        Assert.That(_time.Elapsed - started, Is.EqualTo(TimeSpan.FromMilliseconds(100)), "the proposal travels with the request, the answer with the reply");
    });

    [Test]
    public void Request_MeetingAConnectionClosedUnderIt_IsAnsweredOverANewOne() => Simulate(async ct =>
    {
        var dhts = await StartPairAsync(oneWay: TimeSpan.FromMilliseconds(50), ct);
        var opened = _network.ConnectionsOpened;

        // n0 drops the connection (as an idle close would) while n1's request is on its way to it.
        var lookup = dhts[1].FindClosestPeersAsync(dhts[0].PeerId.ToByteArray(), ct);
        await Task.Delay(TimeSpan.FromMilliseconds(25), _time, ct);
        await _nodes[0].Host.GetConnection(dhts[1].PeerId)!.DisposeAsync();
        var result = await lookup;

        Assert.That((result.Stats.Responses, result.Stats.Failures), Is.EqualTo((1, 0)), "n0 answered the request sent again");
        Assert.That(_network.ConnectionsOpened, Is.EqualTo(opened + 1), "over a connection dialled anew");
    });

    [Test]
    public void Request_ToAPeerThatStoppedServingKad_FailsThatPeer_AndTheLookupGoesOn() => Simulate(async ct =>
    {
        var dhts = await StartNetworkAsync(3, ct);
        Assert.That(dhts[1].RoutingTable.Contains(dhts[2].PeerId), Is.True, "premise: n1 knows n2 as a kad server");
        await dhts[2].DisposeAsync();

        var result = await dhts[1].FindClosestPeersAsync(dhts[2].PeerId.ToByteArray(), ct);

        Assert.That(result.Stats.Failures, Is.EqualTo(1), "n2 refused the protocol: it read no request");
        Assert.That(result.ClosestPeers, Does.Contain(dhts[0].PeerId).And.Not.Contain(dhts[2].PeerId));
    });

    [Test]
    public void Join_FillsTheThreeFarthestBuckets() => Simulate(async ct =>
    {
        // Everyone joins through n0, one after another; every node then looks at its own buckets.
        var dhts = await StartNetworkAsync(80, ct);

        var gaps = new List<string>();
        foreach (var dht in dhts)
        {
            var own = dht.RoutingTable.LocalId;
            var filled = dht.RoutingTable.NonEmptyBuckets();
            // The three farthest buckets, seven eighths of the id space: a node that knows no one in one of
            // them misses every key there. (A bucket for which the network has a single peer may stay
            // empty when that peer joined later and never asked us.)
            for (var bucket = 0; bucket < Math.Min(3, filled[^1]); bucket++)
            {
                var inNetwork = dhts.Count(d => d != dht && own.CommonPrefixLength(KadId.FromPeer(d.PeerId)) == bucket);
                if (inNetwork > 0 && !filled.Contains(bucket)) gaps.Add($"{dht.PeerId}: bucket {bucket} empty, {inNetwork} peers in the network for it");
            }
        }

        // A bucket nobody fills is a part of the id space this node's lookups cannot reach except by luck.
        Assert.That(gaps, Is.Empty);
    });

    [Test]
    public void InboundKadStream_ServesRequestsUntilItWaitsLongerThanTheIdleTimeoutForOne() => Simulate(async ct =>
    {
        var dhts = await StartNetworkAsync(2, ct);
        var idle = new KademliaDhtOptions().InboundIdleTimeout;
        var ping = new Message { Type = Message.Types.MessageType.Ping };
        await using var stream = await _nodes[1].Host.OpenStreamAsync(dhts[0].PeerId, KademliaDhtOptions.DefaultProtocolId, ct);
        async Task<Message?> AskAsync()
        {
            await KadMessageCodec.WriteAsync(stream, ping, ct);
            return await KadMessageCodec.ReadAsync(stream, 4096, 128, ct);
        }

        Assert.That((await AskAsync())?.Type, Is.EqualTo(Message.Types.MessageType.Ping));
        // Two pauses just under the idle timeout: more than it in all, so the wait is timed per request.
        await _time.AdvanceAsync(idle - TimeSpan.FromSeconds(1));
        Assert.That((await AskAsync())?.Type, Is.EqualTo(Message.Types.MessageType.Ping), "served after a pause under the idle timeout");
        await _time.AdvanceAsync(idle - TimeSpan.FromSeconds(1));
        Assert.That((await AskAsync())?.Type, Is.EqualTo(Message.Types.MessageType.Ping), "the idle timer started again with the last request");

        await _time.AdvanceAsync(idle + TimeSpan.FromSeconds(1));
        Assert.That(await KadMessageCodec.ReadAsync(stream, 4096, 128, ct), Is.Null, "the server ended the stream it waited on too long");
    });

    [Test]
    public void InboundKadStream_WhoseRequesterDoesNotReadTheReplies_IsResetAfterTheReplyWriteTimeout() => Simulate(async ct =>
    {
        var dhts = await StartNetworkAsync(2, ct);
        var key = "/v/large"u8.ToArray();
        dhts[0].Records.Put(key, new byte[dhts[0].Options.MaxRecordSize]);
        var get = new Message { Type = Message.Types.MessageType.GetValue, Key = Google.Protobuf.ByteString.CopyFrom(key) };
        await using var stream = await _nodes[1].Host.OpenStreamAsync(dhts[0].PeerId, KademliaDhtOptions.DefaultProtocolId, ct);

        // Forty replies of 16 KiB each: more than the 256 KiB window a stream nobody reads gives its writer,
        // so the server's write waits for a reader that never comes.
        for (var i = 0; i < 40; i++) await KadMessageCodec.WriteAsync(stream, get, ct);
        await _time.AdvanceAsync(dhts[0].Options.ReplyWriteTimeout - TimeSpan.FromSeconds(1));
        await KadMessageCodec.WriteAsync(stream, get, ct);
        Assert.That(dhts[0].RequestsServed, Is.GreaterThan(16).And.LessThan(40), "premise: the server's handler waits to write a reply");

        await _time.AdvanceAsync(TimeSpan.FromSeconds(2));

        await Assert.ThatAsync(async () => await KadMessageCodec.WriteAsync(stream, get, ct), Throws.InstanceOf<YamuxStreamResetException>(),
            "the server gave up on the reply and reset the stream, which held its handler until the connection ended");
    });

    [Test]
    public void Lookup_DialsAtMostEightPublicAddressesOfAPeerAReplyNames_AndNoLocalOnes() => Simulate(async ct =>
    {
        // n0 reached the rogue on the in-memory network, which stands for the internet: a peer there cannot
        // know what our loopback or LAN holds. Its reply names a made-up peer with 16 addresses: six on
        // loopback, LAN and link-local (the cloud metadata service among them), then ten public ones.
        var dials = new List<Multiaddress>();
        var looker = await StartNodeAsync("n0", ct, inner => new IpDialRecordingTransport(inner, dials));
        var named = IdentityOf("named").PeerId;
        Multiaddress[] local =
        [
            Multiaddress.Parse("/ip4/127.0.0.1/tcp/22"), Multiaddress.Parse("/ip4/10.0.0.1/tcp/80"), Multiaddress.Parse("/ip4/192.168.1.1/tcp/80"),
            Multiaddress.Parse("/ip4/169.254.169.254/tcp/80"), Multiaddress.Parse("/ip6/fe80::1/tcp/80"), Multiaddress.Parse("/ip6/::1/tcp/80"),
        ];
        var published = Enumerable.Range(1, 10).Select(i => Multiaddress.Parse($"/ip4/198.51.100.{i}/tcp/4001")).ToArray();
        await using var rogue = await StartRogueKadServerAsync("rogue", KadMessageCodec.FromPeer(named, [.. local, .. published], connected: false), ct);
        await _nodes[0].Host.ConnectAsync(rogue.AdvertisedAddresses[0], ct);
        await _nodes[0].Host.IdentifyAsync(rogue.PeerId, ct);
        Assert.That(looker.RoutingTable.Contains(rogue.PeerId), Is.True, "premise: n0 asks the rogue");

        await looker.FindClosestPeersAsync(named.ToByteArray(), ct);

        Assert.That(dials, Is.EquivalentTo(published.Take(8)), "the lookup dialled the named peer's first eight public addresses, and only those");
        Assert.That(_nodes[0].Host.PeerStore.GetAddresses(named), Is.EquivalentTo(published.Take(8)));
    });

    /// <summary>A host serving kad that answers every request with one reply naming <paramref name="named"/>.</summary>
    private async Task<P2PHost> StartRogueKadServerAsync(string name, Message.Types.Peer named, CancellationToken ct)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = IdentityOf(name), RandomSource = new SeededRandomSource(_sim.CreateRandom("entropy", name)),
            Transports = [_network.CreateTransport(name)], TimeProvider = _time,
        });
        host.Handle(KademliaDhtOptions.DefaultProtocolId, async (context, token) =>
        {
            var request = await KadMessageCodec.ReadAsync(context.Stream, 4096, 1024, token);
            var reply = new Message { Type = request!.Type };
            reply.CloserPeers.Add(named);
            await KadMessageCodec.WriteAsync(context.Stream, reply, token);
        });
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], ct);
        return host;
    }

    /// <summary>The in-memory transport, which also takes every IP address: it records the dial and refuses it, as nothing is there.</summary>
    private sealed class IpDialRecordingTransport(ITransport inner, List<Multiaddress> dials) : ITransport
    {
        public bool CanDial(Multiaddress address) => inner.CanDial(address) || IsIp(address);

        public bool CanListen(Multiaddress address) => inner.CanListen(address);

        public ValueTask<RawConnection> DialAsync(Multiaddress address, CancellationToken cancellationToken)
        {
            if (inner.CanDial(address)) return inner.DialAsync(address, cancellationToken);
            dials.Add(address);
            return ValueTask.FromException<RawConnection>(new TransportException($"nothing answers at {address}"));
        }

        public ValueTask<ITransportListener> ListenAsync(Multiaddress address, CancellationToken cancellationToken) => inner.ListenAsync(address, cancellationToken);

        private static bool IsIp(Multiaddress address) =>
            address.Components.Count > 0 && (address.Components[0].Protocol == MultiaddressProtocol.Ip4 || address.Components[0].Protocol == MultiaddressProtocol.Ip6);
    }

    [Test]
    public void AMachineCyclingIdentities_FillsOnlyItsShareOfAProviderStore_AndAProviderElsewhereIsStillStored() => Simulate(async ct =>
    {
        // 64 KiB of provider records, a sixteenth of it (about six records) for each origin.
        var holder = await StartNodeAsync("n0", ct, maxProviderStoreBytes: 64 << 10);
        const int identities = 8, topicsEach = 4;
        for (var i = 0; i < identities; i++)
        {
            // One machine (/memory/flood), a new identity each time: no per-peer quota can see they are one.
            var (host, flooder) = (default(P2PHost), await StartNodeAsync("flood", ct, identity: KeyPair.FromRandom(_sim.CreateRandom("flood", $"{i}"))));
            for (var t = 0; t < topicsEach; t++) await flooder.AnnounceAsync($"junk/{i}/{t}", ct);
            host = _nodes[^1].Host;
            _nodes.RemoveAt(_nodes.Count - 1);
            await flooder.DisposeAsync();
            await host.DisposeAsync();
        }
        var honest = await StartNodeAsync("n1", ct);
        // ADD_PROVIDER has no reply: the holder's store says when the record arrived.
        var arrived = new TaskCompletionSource();
        holder.Providers.RecordAdded += (key, provider) =>
        {
            if (provider == honest.PeerId) arrived.TrySetResult();
        };

        await honest.AnnounceAsync("p2pinference/auth", ct);
        await arrived.Task.WaitAsync(TimeSpan.FromMinutes(1), _time, ct);

        var floodStored = Enumerable.Range(0, identities * topicsEach)
            .Count(n => holder.Providers.Get(TopicKey.For($"junk/{n / topicsEach}/{n % topicsEach}")).Count > 0);
        Assert.That(floodStored, Is.InRange(1, 8), $"the flood's 4 KiB share holds a few of its {identities * topicsEach} records, not all");
        Assert.That(holder.Providers.BytesFrom("/memory/flood"), Is.InRange(1, (64 << 10) / 16));
        Assert.That(holder.Providers.Get(TopicKey.For("p2pinference/auth")).Select(r => r.Provider), Does.Contain(honest.PeerId));
        Assert.That(holder.Providers.BytesFrom("/memory/n1"), Is.GreaterThan(0), "the honest provider's origin is its own address");
    });

    [Test]
    public void AFloodOfIdentities_DoesNotMakeANodeForgetItsRoutingTablesPeers() => Simulate(async ct =>
    {
        var node = await StartNodeAsync("n0", ct, maxKnownPeers: 16);
        var host = _nodes[0].Host;
        var honest = new List<KademliaDht>();
        for (var i = 1; i <= 4; i++) honest.Add(await StartNodeAsync($"n{i}", ct));
        Assert.That(honest.Select(h => node.RoutingTable.Contains(h.PeerId)), Is.All.True);
        // Idle connections close, so only the routing table keeps the honest peers in the store.
        await _time.AdvanceAsync(new HostOptions { Identity = IdentityOf("x"), Transports = [] }.IdleConnectionTimeout + TimeSpan.FromMinutes(1));
        Assert.That(honest.Select(h => host.GetConnection(h.PeerId)), Is.All.Null, "the honest peers are no longer connected");
        // A peer that is not a DHT server but stays connected, as a client of the node's services would.
        await using var client = new P2PHost(new HostOptions
        {
            Identity = IdentityOf("client"), RandomSource = new SeededRandomSource(_sim.CreateRandom("entropy", "client")),
            Transports = [_network.CreateTransport("client")], TimeProvider = _time,
        });
        await ConnectAndBeIdentifiedAsync(client);

        // One machine, a new identity each time, each identified by the node and gone again: three times what its store holds.
        for (var i = 0; i < 48; i++)
        {
            await using var flooder = new P2PHost(new HostOptions
            {
                Identity = KeyPair.FromRandom(_sim.CreateRandom("flood", $"{i}")), RandomSource = new SeededRandomSource(_sim.CreateRandom("flood-entropy", $"{i}")),
                Transports = [_network.CreateTransport("flood")], TimeProvider = _time,
            });
            await ConnectAndBeIdentifiedAsync(flooder);
        }

        Assert.That(host.PeerStore.Count, Is.LessThanOrEqualTo(16));
        foreach (var (peer, i) in honest.Select((h, i) => (h.PeerId, i + 1)))
            Assert.That(host.PeerStore.GetAddresses(peer), Is.EqualTo(new[] { InMemoryNetwork.AddressOf($"n{i}") }), $"n{i}'s address is kept");
        Assert.That(host.PeerStore.GetProtocols(client.PeerId), Is.Not.Empty, "the connected client's identify answer is kept");
        var redialed = await host.ConnectAsync(honest[^1].PeerId, ct);
        Assert.That(redialed.RemotePeer, Is.EqualTo(honest[^1].PeerId), "the node can dial its table's peers again");

        async Task ConnectAndBeIdentifiedAsync(P2PHost peer)
        {
            var identified = new TaskCompletionSource();
            void OnIdentified(PeerId identifiedPeer)
            {
                if (identifiedPeer == peer.PeerId) identified.TrySetResult();
            }
            host.PeerStore.ProtocolsUpdated += OnIdentified;
            await peer.ConnectAsync(InMemoryNetwork.AddressOf("n0"), ct);
            await identified.Task.WaitAsync(TimeSpan.FromMinutes(1), _time, ct);
            host.PeerStore.ProtocolsUpdated -= OnIdentified;
        }
    });

    [Test]
    public void Dispose_UnannouncesAndUnregistersProtocol() => Simulate(async ct =>
    {
        var dhts = await StartNetworkAsync(2, ct);
        await dhts[1].AnnounceAsync("p2pinference/gateway", ct);
        var host = _nodes[1].Host;

        await dhts[1].DisposeAsync();

        Assert.That(dhts[1].Providers.KeyCount, Is.Zero);
        Assert.That(host.Protocols, Does.Not.Contain(KademliaDhtOptions.DefaultProtocolId));
    });
}
