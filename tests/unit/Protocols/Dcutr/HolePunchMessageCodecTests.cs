using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.TestKit;
using HolePunch = P2PInference.Facilities.Net.Protocols.Dcutr.Proto.HolePunch;

namespace P2PInference.Tests.Unit.Protocols.Dcutr;

[CancelAfter(10000)]
public sealed class HolePunchMessageCodecTests
{
    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    private static readonly Multiaddress Tcp = Multiaddress.Parse("/ip4/198.51.100.7/tcp/4001");
    private static readonly Multiaddress Memory = Multiaddress.Parse("/memory/node-a");

    private static byte[] Framed(IMessage message) => [.. Varint.Encode((ulong)message.CalculateSize()), .. message.ToByteArray()];

    private static async Task<byte[]> WrittenAsync(HolePunchMessage message)
    {
        var stream = new ScriptedStream([]);
        await HolePunchMessageCodec.WriteAsync(stream, message, Token);
        return stream.Written;
    }

    [Test]
    public async Task Connect_RoundTrips_InOneWrite()
    {
        var stream = new ScriptedStream([]);
        await HolePunchMessageCodec.WriteAsync(stream, HolePunchMessage.Connect([Tcp, Memory]), Token);

        var read = await HolePunchMessageCodec.ReadAsync(new ScriptedStream(stream.Written), HolePunchMessageType.Connect, Token);

        Assert.That(stream.Writes, Has.Count.EqualTo(1), "prefix and body leave in one write");
        Assert.That(read.Type, Is.EqualTo(HolePunchMessageType.Connect));
        Assert.That(read.Addresses, Is.EqualTo(new[] { Tcp, Memory }));
    }

    [Test]
    public async Task WireValues_AreTheSpecs()
    {
        var connect = HolePunch.Parser.ParseFrom((await WrittenAsync(HolePunchMessage.Connect([Tcp]))).AsSpan(1));
        var sync = HolePunch.Parser.ParseFrom((await WrittenAsync(HolePunchMessage.Sync)).AsSpan(1));

        Assert.That((int)connect.Type, Is.EqualTo(100), "CONNECT");
        Assert.That(connect.ObsAddrs.Single().ToByteArray(), Is.EqualTo(Tcp.Bytes.ToArray()));
        Assert.That((int)sync.Type, Is.EqualTo(300), "SYNC");
        Assert.That(sync.ObsAddrs, Is.Empty);
    }

    [Test]
    public async Task AddressesWeCannotParse_AreLeftOut()
    {
        var message = new HolePunch { Type = HolePunch.Types.Type.Connect };
        message.ObsAddrs.Add(ByteString.CopyFrom(0xFF, 0xFF, 0x03, 0x01));
        message.ObsAddrs.Add(ByteString.CopyFrom(Tcp.Bytes));

        var read = await HolePunchMessageCodec.ReadAsync(new ScriptedStream(Framed(message)), HolePunchMessageType.Connect, Token);

        Assert.That(read.Addresses, Is.EqualTo(new[] { Tcp }));
    }

    [Test]
    public void TheOtherType_AnUndefinedType_OrNoType_IsADcutrError()
    {
        var sync = new HolePunch { Type = HolePunch.Types.Type.Sync };
        var undefined = new HolePunch { Type = (HolePunch.Types.Type)7 };
        var untyped = new HolePunch();
        untyped.ObsAddrs.Add(ByteString.CopyFrom(Tcp.Bytes));

        foreach (var message in new[] { sync, undefined, untyped })
            Assert.ThrowsAsync<DcutrException>(async () =>
                await HolePunchMessageCodec.ReadAsync(new ScriptedStream(Framed(message)), HolePunchMessageType.Connect, Token), message.ToString());
    }

    [Test]
    public async Task Truncated_AtEveryLength_IsEndOfStream()
    {
        var bytes = await WrittenAsync(HolePunchMessage.Connect([Tcp, Memory]));

        for (var length = 0; length < bytes.Length; length++)
        {
            var cut = bytes[..length];
            Assert.ThrowsAsync<EndOfStreamException>(async () =>
                await HolePunchMessageCodec.ReadAsync(new ScriptedStream(cut), HolePunchMessageType.Connect, Token), $"cut at {length} of {bytes.Length}");
        }
    }

    [Test]
    public void Oversized_IsRefusedFromItsPrefix_BeforeTheBodyIsRead()
    {
        var stream = new ScriptedStream([.. Varint.Encode(HolePunchMessageCodec.MaxMessageLength + 1), .. new byte[64]]);

        var e = Assert.ThrowsAsync<MessageTooLargeException>(async () =>
            await HolePunchMessageCodec.ReadAsync(stream, HolePunchMessageType.Connect, Token));

        Assert.That(e!.MaxLength, Is.EqualTo(4096), "the spec's limit");
        Assert.That(stream.Consumed, Is.EqualTo(2), "only the prefix was read");
    }

    [Test]
    public void Write_OfAMessageOthersWouldRefuse_IsAnArgumentError()
    {
        var many = Enumerable.Range(0, 1000).Select(i => Multiaddress.Parse($"/ip4/198.51.100.{i % 250}/tcp/{4000 + i}")).ToArray();

        Assert.ThrowsAsync<ArgumentException>(async () =>
            await HolePunchMessageCodec.WriteAsync(new ScriptedStream([]), HolePunchMessage.Connect(many), Token));
    }

    [Test]
    public async Task RandomInput_EitherDecodes_OrFailsWithATypedWireError()
    {
        var random = TestSeed.CreateRandom();
        var valid = await WrittenAsync(HolePunchMessage.Connect([Tcp, Memory]));
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
            foreach (var expected in new[] { HolePunchMessageType.Connect, HolePunchMessageType.Sync })
            {
                try
                {
                    await HolePunchMessageCodec.ReadAsync(new ScriptedStream(input), expected, Token);
                }
                catch (Exception e) when (e is DcutrException or MalformedMessageException or MessageTooLargeException or EndOfStreamException)
                {
                    failures[e.GetType().Name] = failures.GetValueOrDefault(e.GetType().Name) + 1;
                }
            }
        }
        TestContext.Out.WriteLine(string.Join(", ", failures.Select(f => $"{f.Key}: {f.Value}")));
        Assert.That(failures.Keys, Is.SupersetOf(new[] { nameof(MalformedMessageException), nameof(EndOfStreamException), nameof(DcutrException) }));
    }
}
