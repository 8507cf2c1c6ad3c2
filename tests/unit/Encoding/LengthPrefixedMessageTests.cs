using Google.Protobuf;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity.Proto;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Encoding;

[CancelAfter(10000)]
public sealed class LengthPrefixedMessageTests
{
    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    private static MemoryStream Bytes(params byte[][] parts) => new(parts.SelectMany(p => p).ToArray());

    [Test]
    public async Task ReadAsync_ReturnsMessages_WrittenByWriteAsync()
    {
        var (a, b) = DuplexStreamPair.Create();
        using (a)
        using (b)
        {
            var big = new byte[300];
            new Random(1).NextBytes(big);
            await LengthPrefixedMessage.WriteAsync(a, "hi"u8.ToArray(), Token);
            await LengthPrefixedMessage.WriteAsync(a, ReadOnlyMemory<byte>.Empty, Token);
            await LengthPrefixedMessage.WriteAsync(a, big, Token);

            Assert.That(await LengthPrefixedMessage.ReadAsync(b, 1024, Token), Is.EqualTo("hi"u8.ToArray()));
            Assert.That(await LengthPrefixedMessage.ReadAsync(b, 1024, Token), Is.Empty);
            Assert.That(await LengthPrefixedMessage.ReadAsync(b, 1024, Token), Is.EqualTo(big));
        }
    }

    [Test]
    public async Task WriteAsync_WritesPrefixAndBody_InOneWriteCall()
    {
        var stream = new Protocols.ScriptedStream([]);
        var body = new byte[200];

        await LengthPrefixedMessage.WriteAsync(stream, body, Token);

        Assert.That(stream.Writes, Has.Count.EqualTo(1));
        Assert.That(stream.Writes[0], Is.EqualTo(new byte[] { 0xC8, 0x01 }.Concat(body).ToArray()));
    }

    [Test]
    public async Task ReadAsync_LeavesFollowingBytes_Unread()
    {
        using var stream = Bytes([3], "abc"u8.ToArray(), "rest"u8.ToArray());

        var message = await LengthPrefixedMessage.ReadAsync(stream, 16, Token);

        Assert.That(message, Is.EqualTo("abc"u8.ToArray()));
        Assert.That(stream.Position, Is.EqualTo(4));
    }

    [Test]
    public async Task ReadAsync_ReturnsNull_OnCleanEndOfStream()
    {
        using var stream = Bytes();
        Assert.That(await LengthPrefixedMessage.ReadAsync(stream, 16, Token), Is.Null);
        Assert.That(await LengthPrefixedMessage.ReadAsync(Bytes(), PublicKey.Parser, 16, Token), Is.Null);
    }

    [Test]
    public async Task ReadAsync_AcceptsMessage_OfExactlyMaxLength()
    {
        using var stream = Bytes([4], new byte[4]);
        Assert.That(await LengthPrefixedMessage.ReadAsync(stream, 4, Token), Has.Length.EqualTo(4));
    }

    [TestCase(5UL)]
    [TestCase(1UL << 31)]
    [TestCase(1UL << 63)]
    [TestCase(ulong.MaxValue)]
    public void ReadAsync_RejectsOversizedLength_BeforeReadingTheBody(ulong length)
    {
        using var stream = Bytes(Varint.Encode(length), new byte[8]);

        var e = Assert.ThrowsAsync<MessageTooLargeException>(async () => await LengthPrefixedMessage.ReadAsync(stream, 4, Token));

        Assert.That(e!.Length, Is.EqualTo(length));
        Assert.That(e.MaxLength, Is.EqualTo(4));
        Assert.That(stream.Position, Is.EqualTo(Varint.GetLength(length)), "nothing of the body is consumed");
    }

    [Test]
    public void ReadAsync_DoesNotAllocateTheAnnouncedLength_WhenRejectingIt()
    {
        using var stream = Bytes(Varint.Encode(int.MaxValue));
        // A MemoryStream completes synchronously, so the whole read runs on this thread.
        var before = GC.GetAllocatedBytesForCurrentThread();

        Assert.ThrowsAsync<MessageTooLargeException>(async () => await LengthPrefixedMessage.ReadAsync(stream, 1 << 20, Token));

        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1 << 20));
    }

    [Test]
    public void ReadAsync_RejectsVarintPrefix_LongerThan64Bits()
    {
        using var stream = Bytes(Enumerable.Repeat((byte)0xFF, 11).ToArray());
        Assert.ThrowsAsync<MalformedMessageException>(async () => await LengthPrefixedMessage.ReadAsync(stream, 16, Token));
    }

    [Test]
    public void ReadAsync_ThrowsEndOfStream_WhenBodyIsTruncated()
    {
        using var stream = Bytes([10], "abc"u8.ToArray());
        Assert.ThrowsAsync<EndOfStreamException>(async () => await LengthPrefixedMessage.ReadAsync(stream, 16, Token));
    }

    [Test]
    public void ReadAsync_ThrowsEndOfStream_WhenPrefixIsTruncated()
    {
        using var stream = Bytes([0x80]);
        Assert.ThrowsAsync<EndOfStreamException>(async () => await LengthPrefixedMessage.ReadAsync(stream, 16, Token));
    }

    [Test]
    public async Task ReadAsyncOfT_ParsesMessage_WrittenByWriteAsyncOfIMessage()
    {
        var key = new PublicKey { Type = KeyType.Ed25519, Data = Google.Protobuf.ByteString.CopyFrom(new byte[32]) };
        var (a, b) = DuplexStreamPair.Create();
        using (a)
        using (b)
        {
            await LengthPrefixedMessage.WriteAsync(a, key, Token);
            Assert.That(await LengthPrefixedMessage.ReadAsync(b, PublicKey.Parser, 64, Token), Is.EqualTo(key));
        }
    }

    [Test]
    public void ReadAsyncOfT_ThrowsMalformedMessage_ForGarbageProtobuf()
    {
        // Field 2, length-delimited, claiming 100 bytes where 1 follows.
        using var stream = Bytes([3, 0x12, 100, 0]);
        Assert.ThrowsAsync<MalformedMessageException>(async () => await LengthPrefixedMessage.ReadAsync(stream, PublicKey.Parser, 64, Token));
    }

    [Test]
    public void ReadAsyncOfT_ThrowsMalformedMessage_WhenRequiredFieldsAreMissing()
    {
        using var stream = Bytes([0]);
        Assert.ThrowsAsync<MalformedMessageException>(async () => await LengthPrefixedMessage.ReadAsync(stream, PublicKey.Parser, 64, Token));
    }

    [Test]
    public void Parse_RefusesAMessageWhoseNestedMessageLacksItsRequiredFields()
    {
        // Whether a type needs the required-fields check is worked out once per type, from its whole
        // descriptor: HopMessage's own required field is set here, its Peer's is not.
        var hop = new P2PInference.Facilities.Net.Protocols.Relay.Proto.HopMessage
        {
            Type = P2PInference.Facilities.Net.Protocols.Relay.Proto.HopMessage.Types.Type.Connect,
            Peer = new P2PInference.Facilities.Net.Protocols.Relay.Proto.Peer(),
        };
        var parser = P2PInference.Facilities.Net.Protocols.Relay.Proto.HopMessage.Parser;
        Assert.Throws<MalformedMessageException>(() => LengthPrefixedMessage.Parse(parser, hop.ToByteArray()));
        hop.Peer.Id = Google.Protobuf.ByteString.CopyFrom(1, 2);
        Assert.That(LengthPrefixedMessage.Parse(parser, hop.ToByteArray()), Is.EqualTo(hop));
        Assert.Throws<MalformedMessageException>(() => LengthPrefixedMessage.Parse(parser, [0x12, 0x00]), "no type, an empty peer");
    }

    [Test]
    public void Parse_TakesMessagesWithoutRequiredFields_Whatever_TheyHold()
    {
        // kad's proto3 Message has nothing required anywhere, so the check is skipped for it.
        var message = new P2PInference.Facilities.Dht.Proto.Message { Type = P2PInference.Facilities.Dht.Proto.Message.Types.MessageType.FindNode };
        message.CloserPeers.Add(new P2PInference.Facilities.Dht.Proto.Message.Types.Peer());
        message.Record = new P2PInference.Facilities.Dht.Proto.Record();
        Assert.That(LengthPrefixedMessage.Parse(P2PInference.Facilities.Dht.Proto.Message.Parser, message.ToByteArray()), Is.EqualTo(message));
        Assert.That(message.IsInitialized(), Is.True, "as the protobuf check says");
    }

    [Test]
    public void ReadAsyncOfT_RejectsOversizedMessage()
    {
        using var stream = Bytes(Varint.Encode(1UL << 63));
        Assert.ThrowsAsync<MessageTooLargeException>(async () => await LengthPrefixedMessage.ReadAsync(stream, PublicKey.Parser, 64, Token));
    }

    private const int FourMiB = 4 << 20;

    [Test]
    public void ReadAsyncOfT_APeerAnnouncingTheLargestMessageAndSendingLittle_HoldsLittle()
    {
        // The kad server reads up to 4 MiB per message on each of up to 1,024 streams a connection may open.
        var stream = new Protocols.ScriptedStream([.. Varint.Encode(FourMiB), 0x0A, 0x02]);

        Assert.ThrowsAsync<EndOfStreamException>(async () => await LengthPrefixedMessage.ReadAsync(stream, PublicKey.Parser, FourMiB, Token));
        Assert.That(stream.LargestReadBuffer, Is.LessThanOrEqualTo(64 * 1024));
    }

    [Test]
    public void ReadAsync_APeerAnnouncingTheLargestMessageAndSendingLittle_HoldsLittle()
    {
        var stream = new Protocols.ScriptedStream([.. Varint.Encode(FourMiB), 1, 2, 3]);

        Assert.ThrowsAsync<EndOfStreamException>(async () => await LengthPrefixedMessage.ReadAsync(stream, FourMiB, Token));
        Assert.That(stream.LargestReadBuffer, Is.LessThanOrEqualTo(64 * 1024));
    }

    [Test]
    public async Task ReadAsync_MessagesLargerThanTheFirstBuffer_ArriveWhole()
    {
        var body = new byte[300 * 1024];
        TestSeed.CreateRandom().NextBytes(body);
        var key = new PublicKey { Type = KeyType.Ed25519, Data = Google.Protobuf.ByteString.CopyFrom(body) };
        var (a, b) = DuplexStreamPair.Create();
        using (a)
        using (b)
        {
            await LengthPrefixedMessage.WriteAsync(a, body, Token);
            await LengthPrefixedMessage.WriteAsync(a, key, Token);

            BytesAssert.AreEqual(body, await LengthPrefixedMessage.ReadAsync(b, FourMiB, Token));
            Assert.That(await LengthPrefixedMessage.ReadAsync(b, PublicKey.Parser, FourMiB, Token), Is.EqualTo(key));
        }
    }

    [Test]
    public void ReadAsync_EndsInTypedOutcome_ForRandomInput()
    {
        var random = TestSeed.CreateRandom();
        for (var round = 0; round < 500; round++)
        {
            var input = new byte[random.Next(0, 40)];
            random.NextBytes(input);
            using var stream = new MemoryStream(input);
            try
            {
                while (LengthPrefixedMessage.ReadAsync(stream, PublicKey.Parser, 32, Token).AsTask().GetAwaiter().GetResult() is not null)
                {
                }
            }
            catch (Exception e) when (e is MalformedMessageException or MessageTooLargeException or EndOfStreamException)
            {
            }
            Assert.That(stream.Position, Is.LessThanOrEqualTo(input.Length));
        }
    }
}
