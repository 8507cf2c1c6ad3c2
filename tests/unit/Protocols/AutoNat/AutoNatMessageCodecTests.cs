using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.TestKit;
using AutoNatMessage = P2PInference.Facilities.Net.Protocols.AutoNat.Proto.Message;

namespace P2PInference.Tests.Unit.Protocols.AutoNat;

[CancelAfter(10000)]
public sealed class AutoNatMessageCodecTests
{
    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    private static readonly Multiaddress Tcp = Multiaddress.Parse("/ip4/198.51.100.7/tcp/4001");
    private static readonly Multiaddress Memory = Multiaddress.Parse("/memory/node-a");

    private static byte[] Framed(IMessage message) => [.. Varint.Encode((ulong)message.CalculateSize()), .. message.ToByteArray()];

    private static async Task<byte[]> WrittenAsync(Func<Stream, ValueTask> write)
    {
        var stream = new ScriptedStream([]);
        await write(stream);
        return stream.Written;
    }

    [Test]
    public async Task Request_RoundTrips_InOneWrite()
    {
        var peer = KeyPair.FromRandom(TestSeed.CreateRandom()).PeerId;
        var stream = new ScriptedStream([]);
        await AutoNatMessageCodec.WriteRequestAsync(stream, new AutoNatDialRequest(peer, [Tcp, Memory]), Token);

        var read = await AutoNatMessageCodec.ReadRequestAsync(new ScriptedStream(stream.Written), AutoNatMessageCodec.MaxMessageLength, Token);

        Assert.That(stream.Writes, Has.Count.EqualTo(1), "prefix and body leave in one write");
        Assert.That(read.Peer, Is.EqualTo(peer));
        Assert.That(read.Addresses, Is.EqualTo(new[] { Tcp, Memory }));
    }

    [TestCase(AutoNatResponseStatus.Ok, "", true)]
    [TestCase(AutoNatResponseStatus.DialError, "connection refused", true)]
    [TestCase(AutoNatResponseStatus.DialRefused, "rate limit", false)]
    [TestCase(AutoNatResponseStatus.BadRequest, "no peer", false)]
    [TestCase(AutoNatResponseStatus.InternalError, "oops", false)]
    public async Task Response_RoundTrips(AutoNatResponseStatus status, string text, bool withAddress)
    {
        var sent = new AutoNatDialResponse(status, text, withAddress ? Tcp : null);
        var bytes = await WrittenAsync(s => AutoNatMessageCodec.WriteResponseAsync(s, sent, Token));

        var read = await AutoNatMessageCodec.ReadResponseAsync(new ScriptedStream(bytes), AutoNatMessageCodec.MaxMessageLength, Token);

        Assert.That(read, Is.EqualTo(sent));
    }

    [Test]
    public async Task Response_WireValues_AreTheSpecs()
    {
        var bytes = await WrittenAsync(s => AutoNatMessageCodec.WriteResponseAsync(s, AutoNatDialResponse.Refused("busy"), Token));
        var message = AutoNatMessage.Parser.ParseFrom(bytes.AsSpan(1));

        Assert.That((int)message.Type, Is.EqualTo(1), "DIAL_RESPONSE");
        Assert.That((int)message.DialResponse.Status, Is.EqualTo(101), "E_DIAL_REFUSED");
        Assert.That(message.DialResponse.StatusText, Is.EqualTo("busy"));
    }

    [Test]
    public async Task Request_AddressesWeCannotParse_AreLeftOut()
    {
        var peer = KeyPair.FromRandom(TestSeed.CreateRandom()).PeerId;
        var info = new AutoNatMessage.Types.PeerInfo { Id = ByteString.CopyFrom(peer.Bytes) };
        info.Addrs.Add(ByteString.CopyFrom(0xFF, 0xFF, 0x03, 0x01));
        info.Addrs.Add(ByteString.CopyFrom(Tcp.Bytes));
        var message = new AutoNatMessage { Type = AutoNatMessage.Types.MessageType.Dial, Dial = new() { Peer = info } };

        var read = await AutoNatMessageCodec.ReadRequestAsync(new ScriptedStream(Framed(message)), AutoNatMessageCodec.MaxMessageLength, Token);

        Assert.That(read.Addresses, Is.EqualTo(new[] { Tcp }));
    }

    [Test]
    public void Request_WithoutPeer_OrOfTheWrongType_OrWithABadPeerId_IsAnAutoNatError()
    {
        var noPeer = new AutoNatMessage { Type = AutoNatMessage.Types.MessageType.Dial, Dial = new() };
        var response = new AutoNatMessage { Type = AutoNatMessage.Types.MessageType.DialResponse, DialResponse = new() { Status = 0 } };
        var badId = new AutoNatMessage
        {
            Type = AutoNatMessage.Types.MessageType.Dial,
            Dial = new() { Peer = new() { Id = ByteString.CopyFrom(0x12, 0x03, 0x01) } },
        };

        foreach (var message in new[] { noPeer, response, badId })
            Assert.ThrowsAsync<AutoNatException>(async () =>
                await AutoNatMessageCodec.ReadRequestAsync(new ScriptedStream(Framed(message)), AutoNatMessageCodec.MaxMessageLength, Token), message.ToString());
    }

    [Test]
    public void Response_OfTheWrongType_WithoutStatus_OrWithAnUndefinedStatus_IsAnAutoNatError()
    {
        var dial = new AutoNatMessage { Type = AutoNatMessage.Types.MessageType.Dial, Dial = new() };
        var noResponse = new AutoNatMessage { Type = AutoNatMessage.Types.MessageType.DialResponse };
        var noStatus = new AutoNatMessage { Type = AutoNatMessage.Types.MessageType.DialResponse, DialResponse = new() { StatusText = "?" } };
        var undefined = new AutoNatMessage
        {
            Type = AutoNatMessage.Types.MessageType.DialResponse,
            DialResponse = new() { Status = (AutoNatMessage.Types.ResponseStatus)42 },
        };

        foreach (var message in new[] { dial, noResponse, noStatus, undefined })
            Assert.ThrowsAsync<AutoNatException>(async () =>
                await AutoNatMessageCodec.ReadResponseAsync(new ScriptedStream(Framed(message)), AutoNatMessageCodec.MaxMessageLength, Token), message.ToString());
    }

    [Test]
    public async Task Truncated_AtEveryLength_IsEndOfStream()
    {
        var peer = KeyPair.FromRandom(TestSeed.CreateRandom()).PeerId;
        var bytes = await WrittenAsync(s => AutoNatMessageCodec.WriteRequestAsync(s, new AutoNatDialRequest(peer, [Tcp, Memory]), Token));

        for (var length = 0; length < bytes.Length; length++)
        {
            var cut = bytes[..length];
            Assert.ThrowsAsync<EndOfStreamException>(async () =>
                await AutoNatMessageCodec.ReadRequestAsync(new ScriptedStream(cut), AutoNatMessageCodec.MaxMessageLength, Token), $"cut at {length} of {bytes.Length}");
        }
    }

    [Test]
    public void Oversized_IsRefusedFromItsPrefix_BeforeTheBodyIsRead()
    {
        var stream = new ScriptedStream([.. Varint.Encode(AutoNatMessageCodec.MaxMessageLength + 1), .. new byte[64]]);

        var e = Assert.ThrowsAsync<MessageTooLargeException>(async () =>
            await AutoNatMessageCodec.ReadRequestAsync(stream, AutoNatMessageCodec.MaxMessageLength, Token));

        Assert.That(e!.MaxLength, Is.EqualTo(AutoNatMessageCodec.MaxMessageLength));
        Assert.That(stream.Consumed, Is.EqualTo(2), "only the prefix was read");
    }

    [Test]
    public void Write_OfAMessageJsWouldRefuse_IsAnArgumentError()
    {
        var peer = KeyPair.FromRandom(TestSeed.CreateRandom()).PeerId;
        var many = Enumerable.Range(0, 1000).Select(i => Multiaddress.Parse($"/ip4/198.51.100.{i % 250}/tcp/{4000 + i}")).ToArray();

        Assert.ThrowsAsync<ArgumentException>(async () =>
            await AutoNatMessageCodec.WriteRequestAsync(new ScriptedStream([]), new AutoNatDialRequest(peer, many), Token));
    }

    [Test]
    public async Task RandomInput_EitherDecodes_OrFailsWithATypedWireError()
    {
        var random = TestSeed.CreateRandom();
        var peer = KeyPair.FromRandom(random).PeerId;
        var valid = await WrittenAsync(s => AutoNatMessageCodec.WriteRequestAsync(s, new AutoNatDialRequest(peer, [Tcp]), Token));
        var failures = new Dictionary<string, int>();
        // 1,000 inputs, not 3,000: each read that fails unwinds its async frames with an exception, which
        // made this take most of a second. 500 mutations of 1-3 bytes still change every byte of the valid
        // message many times over, and 500 random inputs still span empty to over-long, prefixed or not.
        for (var i = 0; i < 1000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[random.Next(0, 200)];
                random.NextBytes(input);
                // Half the time a plausible prefix, so the body parser sees random bodies too.
                if (input.Length > 1 && i % 4 == 0) input[0] = (byte)(input.Length - 1 & 0x7F);
            }
            else
            {
                // A valid message with a few bytes flipped.
                input = (byte[])valid.Clone();
                for (var flips = random.Next(1, 4); flips > 0; flips--) input[random.Next(input.Length)] = (byte)random.Next(256);
            }
            foreach (var read in new Func<Stream, ValueTask>[]
            {
                async s => await AutoNatMessageCodec.ReadRequestAsync(s, 256, Token),
                async s => await AutoNatMessageCodec.ReadResponseAsync(s, 256, Token),
            })
            {
                try
                {
                    await read(new ScriptedStream(input));
                }
                catch (Exception e) when (e is AutoNatException or MalformedMessageException or MessageTooLargeException or EndOfStreamException)
                {
                    failures[e.GetType().Name] = failures.GetValueOrDefault(e.GetType().Name) + 1;
                }
            }
        }
        TestContext.Out.WriteLine(string.Join(", ", failures.Select(f => $"{f.Key}: {f.Value}")));
        Assert.That(failures.Keys, Is.SupersetOf(new[] { nameof(MalformedMessageException), nameof(EndOfStreamException) }));
    }
}
