using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;
using IdentifyMessage = P2PInference.Facilities.Net.Protocols.Identify.Proto.Identify;

namespace P2PInference.Tests.Unit.Protocols;

[CancelAfter(10000)]
public sealed class IdentifyProtocolTests
{
    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    private static IdentifyInfo InfoFor(KeyPair key) => new(
        key.PublicKey,
        [Multiaddress.Parse("/ip4/10.0.0.1/tcp/4001"), Multiaddress.Parse("/memory/node-a")],
        ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/p2pinference/rpc/1.0.0"],
        Multiaddress.Parse("/ip4/192.0.2.7/tcp/50000"),
        "ipfs/0.1.0",
        "p2pinference/test");

    private static ScriptedStream StreamWith(IdentifyMessage message) =>
        new([.. Varint.Encode((ulong)message.CalculateSize()), .. message.ToByteArray()]);

    [Test]
    public async Task Read_WithAnInternMap_SharesTheCallersStrings_AndKeepsTheOthers()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var (responder, initiator) = DuplexStreamPair.Create();
        using (initiator)
        {
            using (responder)
                await IdentifyProtocol.WriteAsync(responder, InfoFor(key), Token);
            var ours = new[] { string.Concat("/ipfs/", "ping/1.0.0"), string.Concat("ipfs/", "0.1.0") };

            var read = await IdentifyProtocol.ReadAsync(initiator, key.PeerId, Token, s => ours.FirstOrDefault(o => o == s) ?? s);

            Assert.That(read.Protocols, Is.EqualTo(new[] { "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/p2pinference/rpc/1.0.0" }));
            Assert.That(read.Protocols[1], Is.SameAs(ours[0]), "a protocol the caller knows is the caller's instance");
            Assert.That(read.ProtocolVersion, Is.SameAs(ours[1]));
            Assert.That(read.AgentVersion, Is.EqualTo("p2pinference/test"));
        }
    }

    [Test]
    public async Task Read_ReturnsWhatWasWritten()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var info = InfoFor(key);
        var (responder, initiator) = DuplexStreamPair.Create();
        using (initiator)
        {
            using (responder)
                await IdentifyProtocol.WriteAsync(responder, info, Token);

            var read = await IdentifyProtocol.ReadAsync(initiator, key.PeerId, Token);

            Assert.That(read.PublicKey, Is.EqualTo(info.PublicKey));
            Assert.That(read.ListenAddresses, Is.EqualTo(info.ListenAddresses));
            Assert.That(read.Protocols, Is.EqualTo(info.Protocols));
            Assert.That(read.ObservedAddress, Is.EqualTo(info.ObservedAddress));
            Assert.That(read.ProtocolVersion, Is.EqualTo("ipfs/0.1.0"));
            Assert.That(read.AgentVersion, Is.EqualTo("p2pinference/test"));
        }
    }

    [Test]
    public async Task Read_DoesNotWaitForTheStreamToEnd()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var (responder, initiator) = DuplexStreamPair.Create();
        using (responder)
        using (initiator)
        {
            await IdentifyProtocol.WriteAsync(responder, InfoFor(key) with { ObservedAddress = null }, Token);

            var read = await IdentifyProtocol.ReadAsync(initiator, key.PeerId, Token);

            Assert.That(read.ObservedAddress, Is.Null);
        }
    }

    [Test]
    public void Read_Rejects_KeyOfAnotherPeer()
    {
        var random = TestSeed.CreateRandom();
        var sender = KeyPair.FromRandom(random);
        var expected = KeyPair.FromRandom(random);
        var message = new IdentifyMessage { PublicKey = ByteString.CopyFrom(sender.PublicKey.ToProtobuf()) };

        Assert.ThrowsAsync<IdentifyException>(() => IdentifyProtocol.ReadAsync(StreamWith(message), expected.PeerId, Token));
    }

    [Test]
    public void Read_Rejects_MalformedKey()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var message = new IdentifyMessage { PublicKey = ByteString.CopyFrom(1, 2, 3) };

        Assert.ThrowsAsync<IdentifyException>(() => IdentifyProtocol.ReadAsync(StreamWith(message), key.PeerId, Token));
    }

    [Test]
    public async Task Read_TakesTheKeyFromThePeerId_WhenTheMessageOmitsIt()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var message = new IdentifyMessage { AgentVersion = "keyless" };

        var read = await IdentifyProtocol.ReadAsync(StreamWith(message), key.PeerId, Token);

        Assert.That(read.PublicKey, Is.EqualTo(key.PublicKey));
        Assert.That(read.ProtocolVersion, Is.Empty);
        Assert.That(read.ListenAddresses, Is.Empty);
    }

    [Test]
    public async Task Read_SkipsAddresses_ItCannotParse()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var tcp = Multiaddress.Parse("/ip4/10.0.0.1/tcp/4001");
        // /ip4/…/udp/…/quic-v1/webtransport: webtransport (0x01d1) is a protocol we do not know.
        var webTransport = Multiaddress.Parse("/ip4/10.0.0.1/udp/4001/quic-v1").ToByteArray().Concat(Varint.Encode(0x01d1)).ToArray();
        var message = new IdentifyMessage
        {
            PublicKey = ByteString.CopyFrom(key.PublicKey.ToProtobuf()),
            ListenAddrs = { ByteString.CopyFrom(webTransport), ByteString.CopyFrom(tcp.Bytes), ByteString.CopyFrom(0xFF, 0xFF) },
            ObservedAddr = ByteString.CopyFrom(webTransport),
        };

        var read = await IdentifyProtocol.ReadAsync(StreamWith(message), key.PeerId, Token);

        Assert.That(read.ListenAddresses, Is.EqualTo(new[] { tcp }));
        Assert.That(read.ObservedAddress, Is.Null);
    }

    [Test]
    public async Task Read_KeepsTheFirst32ListenAddressesAnd128Protocols_OfAMessageListingThousands()
    {
        // Within the 64 KiB a message may have, and kept for as long as the connection lives.
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var addresses = Enumerable.Range(0, 2000).Select(i => Multiaddress.Parse($"/ip4/198.51.{i / 250}.{i % 250}/tcp/4001")).ToArray();
        var protocols = Enumerable.Range(0, 1000).Select(i => $"/p/{i}").ToArray();
        var message = new IdentifyMessage { PublicKey = ByteString.CopyFrom(key.PublicKey.ToProtobuf()), Protocols = { protocols } };
        message.ListenAddrs.AddRange(addresses.Select(a => ByteString.CopyFrom(a.Bytes)));
        Assert.That(message.CalculateSize(), Is.LessThan(IdentifyProtocol.MaxMessageLength), "premise: a message the reader accepts");

        var read = await IdentifyProtocol.ReadAsync(StreamWith(message), key.PeerId, Token);

        Assert.That(read.ListenAddresses, Is.EqualTo(addresses[..32]));
        Assert.That(read.Protocols, Is.EqualTo(protocols[..128]));
    }

    [Test]
    public void Read_RejectsOversizedMessage_BeforeReadingIt()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var stream = new ScriptedStream([.. Varint.Encode(IdentifyProtocol.MaxMessageLength + 1), 0x0A]);

        Assert.ThrowsAsync<MessageTooLargeException>(() => IdentifyProtocol.ReadAsync(stream, key.PeerId, Token));
        Assert.That(stream.Consumed, Is.EqualTo(3));
    }

    [Test]
    public void Read_RejectsLengthPrefixOf2To63()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var stream = new ScriptedStream(Varint.Encode(1UL << 63));

        Assert.ThrowsAsync<MessageTooLargeException>(() => IdentifyProtocol.ReadAsync(stream, key.PeerId, Token));
    }

    [Test]
    public void Read_RejectsGarbageProtobuf()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        // Field 2 (listenAddrs) claiming 50 bytes where 2 follow, inside a 4-byte message.
        var stream = new ScriptedStream([4, 0x12, 50, 1, 2]);

        Assert.ThrowsAsync<MalformedMessageException>(() => IdentifyProtocol.ReadAsync(stream, key.PeerId, Token));
    }

    [Test]
    public void Read_RejectsStream_ThatEndsWithoutAMessage()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        Assert.ThrowsAsync<IdentifyException>(() => IdentifyProtocol.ReadAsync(new ScriptedStream([]), key.PeerId, Token));
    }

    [Test]
    public void Read_ThrowsEndOfStream_ForTruncatedMessage()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var full = new IdentifyMessage { PublicKey = ByteString.CopyFrom(key.PublicKey.ToProtobuf()) };
        byte[] bytes = [.. Varint.Encode((ulong)full.CalculateSize()), .. full.ToByteArray()];

        Assert.ThrowsAsync<EndOfStreamException>(() => IdentifyProtocol.ReadAsync(new ScriptedStream(bytes[..^1]), key.PeerId, Token));
    }

    [Test]
    public void Read_EndsInTypedError_ForRandomInput()
    {
        var random = TestSeed.CreateRandom();
        var key = KeyPair.FromRandom(random);
        for (var round = 0; round < 300; round++)
        {
            var body = new byte[random.Next(0, 80)];
            random.NextBytes(body);
            // Mostly a correct length prefix, so the protobuf parser and the checks see the noise.
            byte[] input = random.Next(4) == 0 ? body : [.. Varint.Encode((ulong)body.Length), .. body];

            // Noise can be a valid message (every field is optional and the key comes from the
            // PeerId); anything else must be one of the documented errors.
            try
            {
                IdentifyProtocol.ReadAsync(new ScriptedStream(input), key.PeerId, Token).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is P2PInference.Facilities.Net.WireProtocolException or EndOfStreamException)
            {
            }
        }
    }

    [Test]
    public async Task Read_AcceptsAnEmptyMessage_ForAPeerIdThatInlinesItsKey()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var read = await IdentifyProtocol.ReadAsync(new ScriptedStream([0]), key.PeerId, Token);
        Assert.That(read.PublicKey, Is.EqualTo(key.PublicKey));
    }

    [Test]
    public void Write_Refuses_MessagesOtherImplementationsWouldReject()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var info = InfoFor(key) with { Protocols = Enumerable.Range(0, 400).Select(i => $"/protocol/number/{i}/1.0.0").ToArray() };
        var stream = new ScriptedStream([]);

        Assert.ThrowsAsync<ArgumentException>(() => IdentifyProtocol.WriteAsync(stream, info, Token));
        Assert.That(stream.Writes, Is.Empty);
    }
}
