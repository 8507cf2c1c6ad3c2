using System.Text;
using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Dht.Proto;
using P2PInference.Facilities.Encoding;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Dht;

/// <summary>
/// The reply reader, which leaves closer peers in the received bytes: it must take and refuse exactly what
/// the protobuf parser followed by <see cref="KadReplyAddresses.Restrict(Message, AddressScope)"/> does.
/// </summary>
[TestFixture]
[CancelAfter(20000)]
public sealed class KadReplyTests
{
    private const int MaxSize = 64 * 1024;
    private const int MaxKey = 64;

    private static Message Sample()
    {
        var m = new Message { Type = Message.Types.MessageType.GetProviders, Key = ByteString.CopyFrom(1, 2, 3), ClusterLevelRaw = 2 };
        m.CloserPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(1),
            new[] { "/ip4/127.0.0.1/tcp/1", "/ip4/198.51.100.1/tcp/1", "/memory/a" }.Select(Multiaddress.Parse), connected: true));
        m.CloserPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(3), [], connected: false));
        m.ProviderPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(2), [Multiaddress.Parse("/ip4/192.168.1.1/tcp/1")], connected: false));
        m.Record = new Record { Key = ByteString.CopyFrom(1), Value = ByteString.CopyFrom(2), TimeReceived = "t" };
        return m;
    }

    private static byte[] Framed(byte[] body)
    {
        var prefix = new byte[10];
        var n = Varint.Write(prefix, (ulong)body.Length);
        return [.. prefix[..n], .. body];
    }

    private static string CloserPeersAsText(KadReply reply)
    {
        var text = new StringBuilder();
        for (var i = 0; i < reply.CloserPeerCount; i++)
        {
            var peer = reply.CloserPeer(i);
            text.Append(Convert.ToHexString(peer.Id));
            for (var a = 0; a < peer.AddressCount; a++) text.Append(' ').Append(Convert.ToHexString(peer.Address(a)));
            text.Append('\n');
        }
        return text.ToString();
    }

    private static string CloserPeersAsText(Message message)
    {
        var text = new StringBuilder();
        foreach (var peer in message.CloserPeers)
        {
            text.Append(Convert.ToHexString(peer.Id.Span));
            foreach (var address in peer.Addrs) text.Append(' ').Append(Convert.ToHexString(address.Span));
            text.Append('\n');
        }
        return text.ToString();
    }

    /// <summary>What the protobuf path makes of <paramref name="body"/>: the restricted message, or the exception type.</summary>
    private static (Message? Message, Type? Error) Expected(byte[] body, AddressScope scope)
    {
        try
        {
            var message = KadMessageCodec.Parse(body, MaxKey);
            KadReplyAddresses.Restrict(message, scope);
            return (message, null);
        }
        catch (Exception e) when (e is MalformedMessageException or KadProtocolException)
        {
            return (null, e.GetType());
        }
    }

    private static void AssertSameAsProtobuf(byte[] body, AddressScope scope)
    {
        var (expected, error) = Expected(body, scope);
        KadReply reply;
        try
        {
            reply = KadReply.Parse(body.ToArray(), MaxKey, scope);
        }
        catch (Exception e) when (e is MalformedMessageException or KadProtocolException)
        {
            Assert.That(e.GetType(), Is.EqualTo(error), $"refused as the protobuf parser does: {Convert.ToHexString(body)}");
            return;
        }
        Assert.That(error, Is.Null, $"taken only when the protobuf parser takes it: {Convert.ToHexString(body)}");
        // As text, not as lists of byte arrays: NUnit compares those a boxed byte at a time, which cost
        // about half a millisecond a reply and made the fuzz tests below take seconds.
        Assert.That(CloserPeersAsText(reply), Is.EqualTo(CloserPeersAsText(expected!)), "closer peers: id, then addresses, one peer a line");
        expected!.CloserPeers.Clear();
        Assert.That(reply.Message, Is.EqualTo(expected), "the rest is the protobuf parser's");
    }

    [TestCase(AddressScope.Loopback)]
    [TestCase(AddressScope.Public)]
    public void Parse_TakesWhatTheProtobufParserTakes_AndRestrictsAddressesAlike(AddressScope scope) =>
        AssertSameAsProtobuf(Sample().ToByteArray(), scope);

    [Test]
    public void Parse_KeepsTheFirstEightAddressesAPeerMayName()
    {
        var m = new Message { Type = Message.Types.MessageType.FindNode };
        var addresses = Enumerable.Range(1, 12).Select(i => Multiaddress.Parse(i % 3 == 0 ? $"/ip4/127.0.0.1/tcp/{i}" : $"/ip4/198.51.100.{i}/tcp/1"));
        m.CloserPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(1), addresses, connected: false));
        m.CloserPeers[0].Addrs.Add(ByteString.CopyFrom(0xff, 0xff));

        var reply = KadReply.Parse(m.ToByteArray(), MaxKey, AddressScope.Public);

        Assert.That(reply.CloserPeer(0).AddressCount, Is.EqualTo(KadReplyAddresses.MaxAddressesPerNamedPeer));
        AssertSameAsProtobuf(m.ToByteArray(), AddressScope.Public);
    }

    [Test]
    public void Parse_HandlesRepeatedIds_UnknownFields_AndGroups_AsTheProtobufParserDoes()
    {
        var id1 = DhtTestPeers.Get(1).Bytes;
        var id2 = DhtTestPeers.Get(2).Bytes;
        var address = Multiaddress.Parse("/ip4/198.51.100.1/tcp/1").Bytes;
        var peer = new List<byte>();
        peer.AddRange([0x0a, (byte)id1.Length, .. id1]);
        peer.AddRange([0x12, (byte)address.Length, .. address]);
        peer.AddRange([0x0a, (byte)id2.Length, .. id2]); // a second id replaces the first
        peer.AddRange([0x18, 0x01, 0x20, 0x96, 0x01, 0x29, 1, 2, 3, 4, 5, 6, 7, 8, 0x35, 1, 2, 3, 4]); // connection, unknown varint, fixed64, fixed32
        peer.AddRange([0x3b, 0x08, 0x01, 0x43, 0x44, 0x3c]); // group 7 holding a varint and an empty group 8
        peer.AddRange([0x12, (byte)address.Length, .. address]);
        byte[] body = [0x08, 0x04, 0x0b, 0x0c, 0x42, (byte)peer.Count, .. peer, 0x60, 0x05, 0x42, 0x00];

        AssertSameAsProtobuf(body, AddressScope.Public);
        var reply = KadReply.Parse(body, MaxKey, AddressScope.Public);
        Assert.That(reply.CloserPeerCount, Is.EqualTo(2));
        Assert.That(reply.CloserPeer(0).Id.ToArray(), Is.EqualTo(id2.ToArray()));
        Assert.That(reply.CloserPeer(0).AddressCount, Is.EqualTo(2));
        Assert.That(reply.CloserPeer(1).Id.Length, Is.Zero);
    }

    [TestCase("0804420a0a")] // closer peer's id longer than the peer
    [TestCase("080442030a0102")] // closer peer longer than the message
    [TestCase("0804420118")] // varint cut off
    [TestCase("08044203020000")] // field number zero
    [TestCase("0804420200ff")] // field number zero, after an empty tag
    [TestCase("080442020c00")] // end-group without a group
    [TestCase("080442020b00")] // group never ended
    [TestCase("0804420213")] // group cut off
    [TestCase("080442030b0c0c")] // stray end-group after a group
    [TestCase("080442020f00")] // wire type 7
    [TestCase("080442020e00")] // wire type 6
    [TestCase("080442032d0102")] // fixed32 cut off
    [TestCase("080442070a80808080800000")] // negative length
    [TestCase("0804420b18ffffffffffffffffff01")] // eleven-byte varint
    [TestCase("0804420b18ffffffffffffffffff00")] // ten-byte varint
    [TestCase("0804420b0bffffffffffffffffff00")] // ten-byte tag
    [TestCase("0807")] // unknown type
    public void Parse_OfMalformedInput_FailsAsTheProtobufParserDoes(string hex) =>
        AssertSameAsProtobuf(Convert.FromHexString(hex), AddressScope.Loopback);

    [Test]
    public void Parse_OfDeeplyNestedGroups_HitsTheRecursionLimitAsTheProtobufParserDoes()
    {
        foreach (var depth in new[] { 98, 99, 100, 101 })
        {
            var inner = Enumerable.Repeat((byte)0x0b, depth).Concat(Enumerable.Repeat((byte)0x0c, depth)).ToArray();
            AssertSameAsProtobuf([0x08, 0x04, 0x42, (byte)(inner.Length | 0x80), (byte)(inner.Length >> 7), .. inner], AddressScope.Loopback);
            AssertSameAsProtobuf([0x08, 0x04, .. inner], AddressScope.Loopback);
        }
    }

    [Test]
    public void Parse_OfEveryTruncation_FailsOrParsesAsTheProtobufParserDoes()
    {
        var body = Sample().ToByteArray();
        for (var cut = 0; cut < body.Length; cut++) AssertSameAsProtobuf(body[..cut], AddressScope.Loopback);
    }

    [Test]
    public void Parse_OfMutatedReplies_FailsOrParsesAsTheProtobufParserDoes()
    {
        var random = TestSeed.CreateRandom();
        var body = Sample().ToByteArray();
        // 2,000 mutations, not 5,000: each runs both parsers, and the test took over a second. Two thousand
        // mutations of 1-3 bytes still change every byte of the ~200-byte sample about twenty times.
        for (var i = 0; i < 2000; i++)
        {
            var mutated = body.ToArray();
            for (var flips = random.Next(1, 4); flips > 0; flips--) mutated[random.Next(mutated.Length)] = (byte)random.Next(256);
            AssertSameAsProtobuf(mutated, i % 2 == 0 ? AddressScope.Loopback : AddressScope.Public);
        }
    }

    [Test]
    public void Parse_OfRandomBytes_FailsOrParsesAsTheProtobufParserDoes()
    {
        var random = TestSeed.CreateRandom();
        // 2,000 inputs, not 5,000 (the test took most of a second): still about ten of every length from 0 to 199.
        for (var i = 0; i < 2000; i++)
        {
            var bytes = new byte[random.Next(0, 200)];
            random.NextBytes(bytes);
            // Half of them start as a reply with closer peers would, so the peer reader sees garbage too.
            if (i % 2 == 0 && bytes.Length > 4)
            {
                bytes[0] = 0x42;
                bytes[1] = (byte)random.Next(0, Math.Min(bytes.Length - 2, 127));
            }
            AssertSameAsProtobuf(bytes, AddressScope.Loopback);
        }
    }

    [TestCase(MaxSize + 1UL)]
    [TestCase(1UL << 31)]
    [TestCase((1UL << 63) - 1)]
    public void Read_RefusesOversizedPrefix_BeforeAllocating(ulong length)
    {
        var prefix = new byte[10];
        var n = Varint.Write(prefix, length);
        var e = Assert.ThrowsAsync<MessageTooLargeException>(async () =>
            await KadReply.ReadAsync(new MemoryStream(prefix[..n]), MaxSize, MaxKey, AddressScope.Loopback, CancellationToken.None));
        Assert.That(e!.Length, Is.EqualTo(length));
    }

    [Test]
    public void Read_ThrowsEndOfStream_ForEveryTruncation()
    {
        var framed = Framed(Sample().ToByteArray());
        for (var cut = 1; cut < framed.Length; cut++)
        {
            Assert.ThrowsAsync<EndOfStreamException>(async () =>
                await KadReply.ReadAsync(new MemoryStream(framed[..cut]), MaxSize, MaxKey, AddressScope.Loopback, CancellationToken.None), $"cut at {cut}");
        }
    }

    [Test]
    public async Task Read_OfRandomStreams_EndsInTypedErrorOrReply(CancellationToken ct)
    {
        var random = TestSeed.CreateRandom();
        for (var i = 0; i < 2000; i++)
        {
            var bytes = new byte[random.Next(0, 200)];
            random.NextBytes(bytes);
            try
            {
                using var stream = new MemoryStream(bytes);
                while (await KadReply.ReadAsync(stream, 256, MaxKey, AddressScope.Loopback, ct) is { } reply)
                {
                    // Whatever parses must also convert safely.
                    for (var p = 0; p < reply.CloserPeerCount; p++) KadMessageCodec.ToPeer(reply.CloserPeer(p), 4);
                }
            }
            catch (Exception e) when (e is MalformedMessageException or MessageTooLargeException or KadProtocolException or EndOfStreamException)
            {
            }
        }
    }

    [Test]
    public async Task Read_RepliesInPooledArrays_KeepNothingOfTheOnesDisposedBefore(CancellationToken ct)
    {
        // A reply read off a stream holds its bytes in pooled arrays until it is disposed; the next one read
        // may get the same arrays, and must then show only its own peers.
        var many = Sample();
        for (var i = 4; i < 24; i++) many.CloserPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(i), [Multiaddress.Parse($"/ip4/10.0.0.{i}/tcp/1")], connected: false));
        var few = new Message { Type = Message.Types.MessageType.FindNode };
        few.CloserPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(30), [Multiaddress.Parse("/ip4/10.0.1.1/tcp/2")], connected: true));
        foreach (var sent in new[] { many, few, many, few, new Message { Type = Message.Types.MessageType.Ping } })
        {
            using var stream = new MemoryStream(Framed(sent.ToByteArray()));
            var reply = (await KadReply.ReadAsync(stream, MaxSize, MaxKey, AddressScope.Loopback, ct))!;
            var expected = KadReply.Parse(sent.ToByteArray(), MaxKey, AddressScope.Loopback);
            Assert.That(reply.Message, Is.EqualTo(expected.Message));
            Assert.That(reply.CloserPeerCount, Is.EqualTo(expected.CloserPeerCount));
            for (var p = 0; p < reply.CloserPeerCount; p++)
            {
                Assert.That(reply.CloserPeer(p).Id.ToArray(), Is.EqualTo(expected.CloserPeer(p).Id.ToArray()));
                Assert.That(reply.CloserPeer(p).AddressCount, Is.EqualTo(expected.CloserPeer(p).AddressCount));
                for (var a = 0; a < reply.CloserPeer(p).AddressCount; a++)
                    Assert.That(reply.CloserPeer(p).Address(a).ToArray(), Is.EqualTo(expected.CloserPeer(p).Address(a).ToArray()));
            }
            Assert.That(() => reply.CloserPeer(reply.CloserPeerCount), Throws.InstanceOf<ArgumentOutOfRangeException>());
            reply.Dispose();
            reply.Dispose();
            // The message was parsed out of the bytes, so it outlives them; the closer peers do not.
            Assert.That(reply.Message, Is.EqualTo(expected.Message));
            if (reply.CloserPeerCount > 0) Assert.That(() => reply.CloserPeer(0), Throws.InstanceOf<ObjectDisposedException>());
        }
    }

    [Test]
    public async Task Read_ReturnsNull_AtACleanEndOfStream(CancellationToken ct) =>
        Assert.That(await KadReply.ReadAsync(new MemoryStream(), MaxSize, MaxKey, AddressScope.Loopback, ct), Is.Null);
}
