using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Dht.Proto;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.TestKit.Network;
using Microsoft.Extensions.Time.Testing;

namespace P2PInference.Tests.Unit.Dht;

[TestFixture]
public sealed class KadRequestHandlerTests
{
    private static readonly byte[] Key = P2PInference.Facilities.Discovery.TopicKey.For("topic");
    private P2PHost _host = null!;
    private KademliaDhtOptions _options = null!;
    private RoutingTable _table = null!;
    private ProviderStore _providers = null!;
    private RecordStore _records = null!;
    private KadRequestHandler _handler = null!;

    [SetUp]
    public void Create()
    {
        var time = new FakeTimeProvider();
        _host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new InMemoryNetwork(time).CreateTransport("me")], TimeProvider = time });
        _options = new KademliaDhtOptions { TimeProvider = time, MaxProvidersPerKey = 5, MaxRecordSize = 16, MaxRecordsPerPeer = 3, MaxRecordStoreBytes = 1024 };
        _table = new RoutingTable(_host.PeerId, _options.K, time);
        _providers = new ProviderStore(time, _options.ProviderRecordTtl, _options.MaxProviderKeys, _options.MaxProvidersPerKey);
        _records = new RecordStore(time, _options.RecordTtl, _options.MaxRecords, _options.MaxRecordSize, _options.MaxRecordsPerPeer, _options.MaxRecordStoreBytes);
        _handler = new KadRequestHandler(_host, _options, _table, _providers, _records, _ => { });
    }

    [TearDown]
    public async Task DisposeAsync() => await _host.DisposeAsync();

    /// <summary>The handler's reply to <paramref name="request"/>, read back from the frame it would write; null when it writes none.</summary>
    private Message? Handle(PeerId remote, Message request, AddressScope remoteScope = AddressScope.Loopback, string? origin = null)
    {
        var frame = _handler.Answer(remote, request, remoteScope, origin, out var length);
        if (frame is null) return null;
        try
        {
            var size = (int)Varint.Read(frame.AsSpan(0, length), out var prefix);
            Assert.That(prefix + size, Is.EqualTo(length), "one length-prefixed message");
            var body = frame.AsSpan(prefix, size);
            var reply = KadMessageCodec.Parse(body, int.MaxValue);
            // The closer peers are written without protobuf: the bytes must still be exactly what protobuf writes.
            Assert.That(body.ToArray(), Is.EqualTo(reply.ToByteArray()), "protobuf's bytes for the reply");
            return reply;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(frame);
        }
    }

    private static Message PutValue(string key, byte[] value) => new()
    {
        Type = Message.Types.MessageType.PutValue,
        Key = ByteString.CopyFromUtf8(key),
        Record = new Record { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(value) },
    };

    private static Message AddProvider(PeerId provider, params Multiaddress[] addrs)
    {
        var m = new Message { Type = Message.Types.MessageType.AddProvider, Key = ByteString.CopyFrom(Key) };
        m.ProviderPeers.Add(KadMessageCodec.FromPeer(provider, addrs, connected: true));
        return m;
    }

    private void AddToTable(int count)
    {
        foreach (var (peer, i) in DhtTestPeers.Take(count).Select((p, i) => (p, i)))
        {
            _table.TryAdd(peer);
            _host.PeerStore.AddAddresses(peer, [Multiaddress.Parse($"/ip4/10.0.0.{i % 250 + 1}/tcp/4001")]);
        }
    }

    [Test]
    public void AddProvider_StoresSender_WithItsAddresses_AndHasNoReply()
    {
        var sender = DhtTestPeers.Get(1);
        var reply = Handle(sender, AddProvider(sender, Multiaddress.Parse("/ip4/10.1.1.1/tcp/1")));

        Assert.That(reply, Is.Null);
        var stored = _providers.Get(Key);
        Assert.That(stored.Select(r => r.Provider), Is.EqualTo(new[] { sender }));
        Assert.That(stored[0].Addresses, Is.EqualTo(new[] { Multiaddress.Parse("/ip4/10.1.1.1/tcp/1") }));
    }

    [Test]
    public void AddProvider_FromAPeerReachedOnAPublicAddress_KeepsOnlyThePublicAddressesItNames()
    {
        var sender = DhtTestPeers.Get(1);
        var request = AddProvider(sender, Multiaddress.Parse("/ip4/127.0.0.1/tcp/22"), Multiaddress.Parse("/dns4/2130706433/tcp/22"),
            Multiaddress.Parse("/ip4/192.168.1.5/tcp/4001"), Multiaddress.Parse("/ip4/198.51.100.7/tcp/4001"));

        Handle(sender, request, AddressScope.Public);

        var publicOnly = new[] { Multiaddress.Parse("/ip4/198.51.100.7/tcp/4001") };
        Assert.That(_providers.Get(Key).Single().Addresses, Is.EqualTo(publicOnly));
        Assert.That(_host.PeerStore.GetAddresses(sender), Is.EqualTo(publicOnly));
        var reply = Handle(DhtTestPeers.Get(2), new Message { Type = Message.Types.MessageType.GetProviders, Key = ByteString.CopyFrom(Key) }, AddressScope.Loopback)!;
        Assert.That(KadMessageCodec.ToPeer(reply.ProviderPeers.Single(), 8)!.Addresses, Is.EqualTo(publicOnly), "nor are they passed on");
    }

    [Test]
    public void AddProvider_FromAPeerOnTheLan_KeepsItsLanAddresses()
    {
        var sender = DhtTestPeers.Get(1);

        Handle(sender, AddProvider(sender, Multiaddress.Parse("/ip4/127.0.0.1/tcp/22"), Multiaddress.Parse("/ip4/192.168.1.5/tcp/4001")), AddressScope.Private);

        Assert.That(_providers.Get(Key).Single().Addresses, Is.EqualTo(new[] { Multiaddress.Parse("/ip4/192.168.1.5/tcp/4001") }));
    }

    [Test]
    public void AddProvider_NamingAnotherPeer_IsIgnored()
    {
        Handle(DhtTestPeers.Get(1), AddProvider(DhtTestPeers.Get(2)));

        Assert.That(_providers.Get(Key), Is.Empty);
    }

    [Test]
    public void AddProvider_FloodForOneKey_IsCappedPerKey()
    {
        foreach (var sender in DhtTestPeers.Take(60))
        {
            for (var i = 0; i < 10; i++) Handle(sender, AddProvider(sender));
        }

        Assert.That(_providers.Get(Key), Has.Count.EqualTo(_options.MaxProvidersPerKey));
        Assert.That(_providers.KeyCount, Is.EqualTo(1));
    }

    [Test]
    public void AddProvider_WithoutKey_IsProtocolError()
    {
        var m = AddProvider(DhtTestPeers.Get(1));
        m.Key = ByteString.Empty;
        Assert.Throws<KadProtocolException>(() => Handle(DhtTestPeers.Get(1), m));
    }

    [Test]
    public void FindNode_ReturnsKClosestWithAddresses_WithoutTheRequester()
    {
        AddToTable(100);
        var requester = DhtTestPeers.Get(0);
        var target = DhtTestPeers.Get(150);

        var reply = Handle(requester, new Message { Type = Message.Types.MessageType.FindNode, Key = ByteString.CopyFrom(target.Bytes) })!;

        var ids = reply.CloserPeers.Select(p => PeerId.FromBytes(p.Id.Span)).ToArray();
        Assert.That(ids, Is.EqualTo(_table.NearestPeers(KadId.FromPeer(target), _options.K, exclude: requester)));
        Assert.That(ids, Has.Length.EqualTo(_options.K).And.No.Member(requester));
        Assert.That(reply.CloserPeers.Select(p => p.Addrs.Count), Has.All.EqualTo(1));
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(127)]
    [TestCase(128)]
    [TestCase(-1)]
    [TestCase(int.MinValue)]
    public void FindNode_Reply_IsProtobufsBytes_ForAnyClusterLevel(int clusterLevel)
    {
        // FIND_NODE's type and cluster level are written without a Message: Handle compares the bytes with protobuf's.
        AddToTable(30);
        foreach (var key in new[] { DhtTestPeers.Get(150).Bytes.ToArray(), _host.PeerId.Bytes.ToArray(), [] })
        {
            var reply = Handle(DhtTestPeers.Get(0), new Message { Type = Message.Types.MessageType.FindNode, Key = ByteString.CopyFrom(key), ClusterLevelRaw = clusterLevel })!;
            Assert.That(reply.Type, Is.EqualTo(Message.Types.MessageType.FindNode));
            Assert.That(reply.ClusterLevelRaw, Is.EqualTo(clusterLevel));
            Assert.That(reply.Key.IsEmpty && reply.Record is null && reply.ProviderPeers.Count == 0, "nothing but the type, the peers and the level");
            Assert.That(reply.CloserPeers, Is.Not.Empty);
        }
    }

    [Test]
    public void FindNode_ForOurOwnId_ReturnsExactlyUs()
    {
        AddToTable(30);
        var reply = Handle(DhtTestPeers.Get(0), new Message { Type = Message.Types.MessageType.FindNode, Key = ByteString.CopyFrom(_host.PeerId.Bytes) })!;

        Assert.That(reply.CloserPeers, Has.Count.EqualTo(1));
        Assert.That(PeerId.FromBytes(reply.CloserPeers[0].Id.Span), Is.EqualTo(_host.PeerId));
    }

    [Test]
    public void GetProviders_ReturnsStoredProviders_AndCloserPeers()
    {
        AddToTable(30);
        var provider = DhtTestPeers.Get(200);
        Handle(provider, AddProvider(provider, Multiaddress.Parse("/ip4/10.9.9.9/tcp/9")));

        var reply = Handle(DhtTestPeers.Get(201), new Message { Type = Message.Types.MessageType.GetProviders, Key = ByteString.CopyFrom(Key) })!;

        Assert.That(reply.Type, Is.EqualTo(Message.Types.MessageType.GetProviders));
        var found = KadMessageCodec.ToPeer(reply.ProviderPeers.Single(), 8)!;
        Assert.That(found.PeerId, Is.EqualTo(provider));
        Assert.That(found.Addresses, Is.EqualTo(new[] { Multiaddress.Parse("/ip4/10.9.9.9/tcp/9") }));
        Assert.That(reply.CloserPeers, Has.Count.EqualTo(_options.K));
    }

    [Test]
    public void RepliesWithCloserPeers_AreProtobufsBytes_WithEveryFieldAroundThem()
    {
        // Closer peers (field 8) are written between record (3) and providerPeers (9) and clusterLevelRaw (10);
        // Handle checks each reply's bytes against protobuf's.
        AddToTable(30);
        var provider = DhtTestPeers.Get(200);
        Handle(provider, AddProvider(provider, Multiaddress.Parse("/ip4/10.9.9.9/tcp/9"), Multiaddress.Parse("/ip4/10.9.9.8/tcp/9")));
        Handle(DhtTestPeers.Get(1), new Message
        {
            Type = Message.Types.MessageType.PutValue, Key = ByteString.CopyFrom(Key),
            Record = new Record { Key = ByteString.CopyFrom(Key), Value = ByteString.CopyFromUtf8("v") },
        });

        var providers = Handle(DhtTestPeers.Get(201), new Message { Type = Message.Types.MessageType.GetProviders, Key = ByteString.CopyFrom(Key), ClusterLevelRaw = 3 })!;
        var value = Handle(DhtTestPeers.Get(201), new Message { Type = Message.Types.MessageType.GetValue, Key = ByteString.CopyFrom(Key), ClusterLevelRaw = 300 })!;
        var self = Handle(DhtTestPeers.Get(201), new Message { Type = Message.Types.MessageType.FindNode, Key = ByteString.CopyFrom(_host.PeerId.Bytes), ClusterLevelRaw = 1 })!;

        Assert.That(providers.ProviderPeers, Has.Count.EqualTo(1));
        Assert.That(providers.ClusterLevelRaw, Is.EqualTo(3));
        Assert.That(providers.CloserPeers, Has.Count.EqualTo(_options.K));
        Assert.That(value.Record.Value.ToStringUtf8(), Is.EqualTo("v"));
        Assert.That(value.ClusterLevelRaw, Is.EqualTo(300));
        Assert.That(value.CloserPeers, Has.Count.EqualTo(_options.K));
        Assert.That(self.CloserPeers.Single().Connection, Is.EqualTo(Message.Types.ConnectionType.Connected));
    }

    [Test]
    public void PutValue_StoresAndEchoes_ThenGetValueReturnsIt()
    {
        var put = PutValue("/v/1", "hello"u8.ToArray());

        Assert.That(Handle(DhtTestPeers.Get(1), put), Is.EqualTo(put));
        var reply = Handle(DhtTestPeers.Get(2), new Message { Type = Message.Types.MessageType.GetValue, Key = ByteString.CopyFromUtf8("/v/1") })!;

        Assert.That(reply.Record.Value.ToStringUtf8(), Is.EqualTo("hello"));
        Assert.That(reply.Record.TimeReceived, Does.StartWith("2000-01-01T"));
    }

    [Test]
    public void PutValue_Oversized_OrWithMismatchedKey_OrWithoutRecord_IsProtocolError()
    {
        var big = new Message
        {
            Type = Message.Types.MessageType.PutValue,
            Key = ByteString.CopyFromUtf8("k"),
            Record = new Record { Key = ByteString.CopyFromUtf8("k"), Value = ByteString.CopyFrom(new byte[17]) },
        };
        var mismatched = new Message
        {
            Type = Message.Types.MessageType.PutValue,
            Key = ByteString.CopyFromUtf8("k"),
            Record = new Record { Key = ByteString.CopyFromUtf8("other"), Value = ByteString.CopyFromUtf8("v") },
        };
        var empty = new Message { Type = Message.Types.MessageType.PutValue, Key = ByteString.CopyFromUtf8("k") };

        Assert.Throws<KadProtocolException>(() => Handle(DhtTestPeers.Get(1), big));
        Assert.Throws<KadProtocolException>(() => Handle(DhtTestPeers.Get(1), mismatched));
        Assert.Throws<KadProtocolException>(() => Handle(DhtTestPeers.Get(1), empty));
        Assert.That(_records.Count, Is.Zero);
    }

    [Test]
    public void PutValue_PastTheSendersQuota_IsProtocolError_WhileItsUpdatesAndOtherPeersAreStored()
    {
        static Message Put(string key, string value) => PutValue(key, System.Text.Encoding.UTF8.GetBytes(value));
        var flooder = DhtTestPeers.Get(1);
        for (var i = 0; i < _options.MaxRecordsPerPeer; i++) Handle(flooder, Put($"/v/{i}", "x"));

        var refused = Assert.Throws<KadProtocolException>(() => Handle(flooder, Put("/v/new", "x")));
        Assert.That(refused!.Message, Does.Contain("holds its 3 records"));
        Assert.That(Handle(flooder, Put("/v/0", "updated")), Is.Not.Null, "updating a record of its own is not a new one");
        Assert.That(Handle(DhtTestPeers.Get(2), Put("/v/other", "y")), Is.Not.Null, "another peer is still stored");
        Assert.That(_records.Count, Is.EqualTo(_options.MaxRecordsPerPeer + 1));
    }

    [Test]
    public void PutValue_PastTheStoresByteBudget_IsProtocolError_AndTheStoredValuesAreStillServed()
    {
        static Message Put(string key) => PutValue(key, new byte[16]);
        // Each from a new identity, so no per-peer quota applies: 1 KiB holds four of these.
        var peers = DhtTestPeers.Take(10);
        for (var i = 0; i < 4; i++) Assert.That(Handle(peers[i], Put($"/v/{i}")), Is.Not.Null);

        var refused = Assert.Throws<KadProtocolException>(() => Handle(peers[4], Put("/v/4")));

        Assert.That(refused!.Message, Does.Contain("1024 bytes"));
        Assert.That(_records.Bytes, Is.LessThanOrEqualTo(1024));
        var reply = Handle(peers[5], new Message { Type = Message.Types.MessageType.GetValue, Key = ByteString.CopyFromUtf8("/v/0") })!;
        Assert.That(reply.Record.Value.Length, Is.EqualTo(16));
    }

    [Test]
    public void AddProvider_FromAFloodOfIdentities_StopsAtTheStoresByteBudget_AndTheStoredProvidersAreStillServed()
    {
        var small = new ProviderStore(new FakeTimeProvider(), _options.ProviderRecordTtl, _options.MaxProviderKeys, 1000, maxBytes: 4096);
        _handler = new KadRequestHandler(_host, _options, _table, small, _records, _ => { });
        var addresses = Enumerable.Range(0, 8).Select(i => Multiaddress.Parse($"/ip4/10.0.1.{i}/tcp/4001")).ToArray();

        foreach (var sender in DhtTestPeers.Take(30)) Handle(sender, AddProvider(sender, addresses), AddressScope.Private);

        Assert.That(small.Bytes, Is.LessThanOrEqualTo(4096));
        var stored = small.Get(Key);
        Assert.That(stored, Has.Count.InRange(1, 10));
        var reply = Handle(DhtTestPeers.Get(200), new Message { Type = Message.Types.MessageType.GetProviders, Key = ByteString.CopyFrom(Key) })!;
        Assert.That(reply.ProviderPeers.Select(p => KadMessageCodec.ToPeer(p, 16)!.PeerId), Is.EquivalentTo(stored.Select(r => r.Provider)));
    }

    [Test]
    public void AddProvider_FromAFloodOfIdentitiesAtOneAddress_StopsAtItsShare_WhilePeersElsewhereAreStored()
    {
        var share = new ProviderStore(new FakeTimeProvider(), _options.ProviderRecordTtl, 100, 10, maxBytesPerOrigin: 1500);
        _handler = new KadRequestHandler(_host, _options, _table, share, _records, _ => { });
        var addresses = Enumerable.Range(0, 2).Select(i => Multiaddress.Parse($"/ip4/198.51.100.7/tcp/{4000 + i}")).ToArray();

        foreach (var sender in DhtTestPeers.Take(10)) Handle(sender, AddProvider(sender, addresses), AddressScope.Public, "/ip4/198.51.100.7");
        var honest = DhtTestPeers.Get(200);
        Handle(honest, AddProvider(honest, Multiaddress.Parse("/ip4/192.0.2.1/tcp/4001")), AddressScope.Public, "/ip4/192.0.2.1");

        Assert.That(share.BytesFrom("/ip4/198.51.100.7"), Is.InRange(1, 1500));
        var stored = share.Get(Key).Select(r => r.Provider).ToList();
        Assert.That(stored, Has.Member(honest));
        Assert.That(stored, Has.Count.InRange(2, 5), "1,500 bytes hold a few of the flood's records, not ten");
    }

    [Test]
    public void PutValue_PastTheShareOfTheSendersAddress_IsProtocolError_WhilePeersElsewhereAreStored()
    {
        static Message Put(string key) => PutValue(key, new byte[16]);
        var records = new RecordStore(new FakeTimeProvider(), _options.RecordTtl, 100, 16, maxBytesPerOrigin: 2 * (192 + 4 + 16));
        _handler = new KadRequestHandler(_host, _options, _table, _providers, records, _ => { });
        var peers = DhtTestPeers.Take(10);
        Handle(peers[0], Put("/v/0"), AddressScope.Public, "/ip4/198.51.100.7");
        Handle(peers[1], Put("/v/1"), AddressScope.Public, "/ip4/198.51.100.7");

        var refused = Assert.Throws<KadProtocolException>(() => Handle(peers[2], Put("/v/2"), AddressScope.Public, "/ip4/198.51.100.7"));

        Assert.That(refused!.Message, Does.Contain("its address its share"));
        Assert.That(Handle(peers[3], Put("/v/3"), AddressScope.Public, "/ip4/192.0.2.1"), Is.Not.Null, "a peer at another address is stored");
        Assert.That(Handle(peers[4], Put("/v/4"), AddressScope.Loopback), Is.Not.Null, "a peer with no origin (loopback) is counted against none");
        Assert.That(records.Count, Is.EqualTo(4));
    }

    [Test]
    public async Task TheDht_GivesItsStoresTheByteBudgetsOfItsOptions()
    {
        var time = new FakeTimeProvider();
        await using var dht = new KademliaDht(_host, new KademliaDhtOptions { TimeProvider = time, MaxRecordStoreBytes = 1000, MaxProviderStoreBytes = 1000 });

        Assert.That(dht.Records.Put([1], new byte[700]), Is.True);
        Assert.That(dht.Records.Put([2], new byte[700]), Is.False);
        Assert.That(dht.Providers.Add("k"u8, DhtTestPeers.Get(1), [Multiaddress.Parse("/ip4/10.0.0.1/tcp/1")]), Is.True);
        Assert.That(dht.Providers.Add("k"u8, DhtTestPeers.Get(2), Enumerable.Range(0, 8).Select(i => Multiaddress.Parse($"/ip4/10.0.0.{i}/tcp/1")).ToArray()), Is.False);
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new KademliaDht(_host, new KademliaDhtOptions { MaxProviderStoreBytes = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new KademliaDht(_host, new KademliaDhtOptions { MaxRecordStoreBytes = 0 }));
    }

    [Test]
    public async Task TheDht_GivesEachOriginTheShareOfItsStoresItsOptionsSay()
    {
        var time = new FakeTimeProvider();
        await using var dht = new KademliaDht(_host, new KademliaDhtOptions { TimeProvider = time, MaxRecordStoreBytes = 4000, MaxStoreSharePerOrigin = 0.25 });

        Assert.That(dht.Records.Put([1], new byte[700], DhtTestPeers.Get(1), "/ip4/198.51.100.7"), Is.True);
        Assert.That(dht.Records.Put([2], new byte[700], DhtTestPeers.Get(2), "/ip4/198.51.100.7"), Is.False, "a quarter of 4,000 bytes holds one");
        Assert.That(dht.Records.Put([2], new byte[700], DhtTestPeers.Get(2), "/ip4/198.51.100.8"), Is.True);
        await using (var whole = new KademliaDht(_host, new KademliaDhtOptions { TimeProvider = time, MaxRecordStoreBytes = 4000, MaxStoreSharePerOrigin = 1 }))
        {
            var stored = Enumerable.Range(0, 10).Count(i => whole.Records.Put([(byte)i], new byte[700], DhtTestPeers.Get(i), "/ip4/198.51.100.7"));
            Assert.That(stored, Is.EqualTo(4), "a share of 1 is the whole store");
        }
        foreach (var share in new[] { 0, -0.5, 1.5, double.NaN })
            Assert.Throws<ArgumentOutOfRangeException>(() => _ = new KademliaDht(_host, new KademliaDhtOptions { MaxStoreSharePerOrigin = share }), $"share {share}");
    }

    [Test]
    public void Ping_IsAnswered()
    {
        var reply = Handle(DhtTestPeers.Get(1), new Message { Type = Message.Types.MessageType.Ping });
        Assert.That(reply!.Type, Is.EqualTo(Message.Types.MessageType.Ping));
    }

    [Test]
    public void UnknownType_IsProtocolError()
    {
        Assert.Throws<KadProtocolException>(() => Handle(DhtTestPeers.Get(1), new Message { Type = (Message.Types.MessageType)42 }));
    }
}
