using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Dht.Proto;
using P2PInference.Facilities.Encoding;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Dht;

[TestFixture]
[CancelAfter(10000)]
public sealed class KadMessageCodecTests
{
    private const int MaxSize = 64 * 1024;
    private const int MaxKey = 1024;

    private static Message Sample()
    {
        var m = new Message { Type = Message.Types.MessageType.GetProviders, Key = ByteString.CopyFrom(1, 2, 3) };
        m.CloserPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(1), [Multiaddress.Parse("/ip4/127.0.0.1/tcp/1")], connected: true));
        m.ProviderPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(2), [], connected: false));
        return m;
    }

    private static byte[] Framed(byte[] body)
    {
        var prefix = new byte[10];
        var n = Varint.Write(prefix, (ulong)body.Length);
        return [.. prefix[..n], .. body];
    }

    [Test]
    public async Task WriteThenRead_RoundTrips(CancellationToken ct)
    {
        using var stream = new MemoryStream();
        await KadMessageCodec.WriteAsync(stream, Sample(), ct);
        stream.Position = 0;

        var read = await KadMessageCodec.ReadAsync(stream, MaxSize, MaxKey, ct);

        Assert.That(read, Is.EqualTo(Sample()));
        Assert.That(await KadMessageCodec.ReadAsync(stream, MaxSize, MaxKey, ct), Is.Null, "clean end of stream");
    }

    [Test]
    public void FieldNumbers_MatchTheSpec()
    {
        // type=1 (varint), key=2, record=3, closerPeers=8, providerPeers=9, clusterLevelRaw=10.
        var m = new Message { Type = Message.Types.MessageType.FindNode, Key = ByteString.CopyFrom(7), ClusterLevelRaw = 1,
            Record = new Record { Key = ByteString.CopyFrom(1), Value = ByteString.CopyFrom(2), TimeReceived = "t" } };
        m.CloserPeers.Add(new Message.Types.Peer { Id = ByteString.CopyFrom(5), Connection = Message.Types.ConnectionType.Connected });
        var bytes = m.ToByteArray();
        Assert.That(bytes[..2], Is.EqualTo(new byte[] { 0x08, 0x04 }));
        Assert.That(bytes[2..5], Is.EqualTo(new byte[] { 0x12, 0x01, 0x07 }));
        Assert.That(bytes[5], Is.EqualTo(0x1a)); // record, field 3
        var record = new byte[] { 0x0a, 0x01, 0x01, 0x12, 0x01, 0x02, 0x2a, 0x01, (byte)'t' };
        Assert.That(bytes[7..16], Is.EqualTo(record));
        Assert.That(bytes[16], Is.EqualTo(0x42)); // closerPeers, field 8
        Assert.That(bytes[18..22], Is.EqualTo(new byte[] { 0x0a, 0x01, 0x05, 0x18 }));
        Assert.That(bytes[^2..], Is.EqualTo(new byte[] { 0x50, 0x01 })); // clusterLevelRaw, field 10
    }

    [Test]
    public void Read_Throws_WhenTypeIsUnknown()
    {
        var body = new byte[] { 0x08, 0x07 }; // type = 7
        Assert.ThrowsAsync<KadProtocolException>(async () =>
            await KadMessageCodec.ReadAsync(new MemoryStream(Framed(body)), MaxSize, MaxKey, CancellationToken.None));
    }

    [Test]
    public void Read_Throws_WhenKeyIsTooLong()
    {
        var m = new Message { Type = Message.Types.MessageType.FindNode, Key = ByteString.CopyFrom(new byte[MaxKey + 1]) };
        Assert.ThrowsAsync<KadProtocolException>(async () =>
            await KadMessageCodec.ReadAsync(new MemoryStream(Framed(m.ToByteArray())), MaxSize, MaxKey, CancellationToken.None));
    }

    [TestCase(MaxSize + 1UL)]
    [TestCase(1UL << 31)]
    [TestCase(1UL << 62)]
    [TestCase((1UL << 63) - 1)]
    public void Read_RefusesOversizedPrefix_BeforeAllocating(ulong length)
    {
        var prefix = new byte[10];
        var n = Varint.Write(prefix, length);
        var e = Assert.ThrowsAsync<MessageTooLargeException>(async () =>
            await KadMessageCodec.ReadAsync(new MemoryStream(prefix[..n]), MaxSize, MaxKey, CancellationToken.None));
        Assert.That(e!.Length, Is.EqualTo(length));
    }

    [Test]
    public void Read_ThrowsEndOfStream_ForEveryTruncation()
    {
        var framed = Framed(Sample().ToByteArray());
        for (var cut = 1; cut < framed.Length; cut++)
        {
            Assert.ThrowsAsync<EndOfStreamException>(async () =>
                await KadMessageCodec.ReadAsync(new MemoryStream(framed[..cut]), MaxSize, MaxKey, CancellationToken.None), $"cut at {cut}");
        }
    }

    [Test]
    public void Parse_OfTruncatedBody_IsMalformedOrValid_NeverAnotherError()
    {
        var body = Sample().ToByteArray();
        for (var cut = 0; cut < body.Length; cut++)
        {
            try
            {
                KadMessageCodec.Parse(body.AsSpan(0, cut), MaxKey);
            }
            catch (Exception e) when (e is MalformedMessageException or KadProtocolException)
            {
            }
        }
    }

    [Test]
    public async Task Read_OfRandomBytes_EndsInTypedErrorOrMessage(CancellationToken ct)
    {
        var random = TestSeed.CreateRandom();
        for (var i = 0; i < 2000; i++)
        {
            var bytes = new byte[random.Next(0, 200)];
            random.NextBytes(bytes);
            try
            {
                using var stream = new MemoryStream(bytes);
                while (await KadMessageCodec.ReadAsync(stream, 256, 64, ct) is { } message)
                {
                    // Whatever parses must also convert safely.
                    foreach (var p in message.CloserPeers.Concat(message.ProviderPeers)) KadMessageCodec.ToPeer(p, 4);
                }
            }
            catch (Exception e) when (e is MalformedMessageException or MessageTooLargeException or KadProtocolException or EndOfStreamException)
            {
            }
        }
    }

    [Test]
    public void ToPeer_ReturnsNull_ForInvalidPeerId()
    {
        Assert.That(KadMessageCodec.ToPeer(new Message.Types.Peer { Id = ByteString.CopyFrom(1, 2, 3) }, 4), Is.Null);
        Assert.That(KadMessageCodec.ToPeer(new Message.Types.Peer(), 4), Is.Null);
    }

    [Test]
    public void ToPeer_SkipsBadAddresses_AndAddressesNamingAnotherPeer_AndCaps()
    {
        var wire = new Message.Types.Peer { Id = ByteString.CopyFrom(DhtTestPeers.Get(1).Bytes) };
        wire.Addrs.Add(ByteString.CopyFrom(0xff, 0xff, 0xff));
        wire.Addrs.Add(ByteString.CopyFrom(Multiaddress.Parse($"/ip4/1.2.3.4/tcp/1/p2p/{DhtTestPeers.Get(2)}").Bytes));
        wire.Addrs.Add(ByteString.CopyFrom(Multiaddress.Parse($"/ip4/1.2.3.4/tcp/2/p2p/{DhtTestPeers.Get(1)}").Bytes));
        for (var i = 3; i < 20; i++) wire.Addrs.Add(ByteString.CopyFrom(Multiaddress.Parse($"/ip4/1.2.3.4/tcp/{i}").Bytes));

        var peer = KadMessageCodec.ToPeer(wire, 4)!;

        Assert.That(peer.PeerId, Is.EqualTo(DhtTestPeers.Get(1)));
        Assert.That(peer.Addresses.Select(a => a.ToString()), Is.EqualTo(new[]
        {
            "/ip4/1.2.3.4/tcp/2", "/ip4/1.2.3.4/tcp/3", "/ip4/1.2.3.4/tcp/4", "/ip4/1.2.3.4/tcp/5",
        }));
    }
}
