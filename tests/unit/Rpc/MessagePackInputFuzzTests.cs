using MessagePack;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.TestKit;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>
/// Hostile MessagePack on the paths that read network bytes (the RPC envelope and frames, a worker
/// contract): whatever arrives, the reader returns a message or throws a typed error — never
/// another exception, a stack overflow or a hang.
/// </summary>
[TestFixture]
public sealed class MessagePackInputFuzzTests
{
    private const int MaxFrame = 8 * 1024 * 1024;

    private static readonly RequestEnvelope Sample = new()
    {
        Method = "processor.infer",
        Payload = new InferRequest { RequestId = "r", Model = "echo", Prompt = "hello", Stop = { "\n" } }.ToByteArray(),
        TimeoutMs = 1500,
        TraceId = "trace",
        RequestId = "call-1",
        Metadata = { ["authorization"] = "ApiKey x" },
        Streaming = true,
    };

    private static byte[] SampleBody => MessagePackRpcCodec<RequestEnvelope>.Instance.ToByteArray(Sample);

    private static byte[] Framed(byte[] body) => [.. Varint.Encode((ulong)body.Length), .. body];

    private static Task<RequestEnvelope?> ReadEnvelopeAsync(byte[] wire) =>
        RpcFrames.ReadAsync<RequestEnvelope>(new MemoryStream(wire), MaxFrame, CancellationToken.None).AsTask();

    [Test]
    public async Task AFramedEnvelope_RoundTrips()
    {
        using var frame = RpcFrames.Encode(Sample);

        var read = await ReadEnvelopeAsync(frame.Frame().ToArray());

        Assert.That(read, Is.Not.Null);
        Assert.That(read!.Method, Is.EqualTo(Sample.Method));
        Assert.That(read.Payload.ToArray(), Is.EqualTo(Sample.Payload.ToArray()));
        Assert.That(read.Metadata, Is.EqualTo(Sample.Metadata));
        Assert.That(read.TimeoutMs, Is.EqualTo(1500));
        Assert.That(read.Streaming, Is.True);
    }

    [Test]
    public void DecodedPayloads_DoNotShareTheInputBuffer()
    {
        // The frame reader returns its pooled buffer right after decoding: nothing decoded may point into it.
        var body = SampleBody;
        var envelope = MessagePackRpcCodec<RequestEnvelope>.Instance.Decode(body);
        var frame = MessagePackRpcCodec<ResponseFrame>.Instance.Decode(MessagePackRpcCodec<ResponseFrame>.Instance.ToByteArray(new ResponseFrame { Payload = Sample.Payload }));
        var expected = Sample.Payload.ToArray();

        Array.Clear(body);

        Assert.That(envelope.Payload.ToArray(), Is.EqualTo(expected));
        Assert.That(frame.Payload!.Value.ToArray(), Is.EqualTo(expected));
    }

    [Test]
    public async Task TruncatedFrames_EndTheStreamOrAreMalformed()
    {
        var body = SampleBody;
        var wire = Framed(body);
        Assert.That(await ReadEnvelopeAsync([]), Is.Null, "a stream that ends before the first byte is a clean end");
        for (var length = 1; length < wire.Length; length++)
        {
            var cut = wire[..length];
            Assert.That(() => ReadEnvelopeAsync(cut), Throws.InstanceOf<EndOfStreamException>(), $"stream cut after {length} bytes");
        }
        // The prefix matches but the MessagePack inside is cut short.
        for (var length = 0; length < body.Length; length++)
        {
            var framed = Framed(body[..length]);
            Assert.That(() => ReadEnvelopeAsync(framed), Throws.InstanceOf<MalformedMessageException>(), $"body cut to {length} bytes");
        }
    }

    [Test]
    public void OversizedInput_IsRefusedBeforeItIsRead()
    {
        // A prefix past the limit: refused from the prefix alone (the body never arrives).
        var prefix = Varint.Encode(MaxFrame + 1);
        Assert.That(() => ReadEnvelopeAsync(prefix), Throws.InstanceOf<MessageTooLargeException>());

        // Small frames whose headers announce far more than they hold: an array of 2^32-1 members,
        // a map of 2^32-1 entries, a 4 GiB method name, a 4 GiB payload.
        byte[][] liars =
        [
            [0xDD, 0xFF, 0xFF, 0xFF, 0xFF],
            [0xDF, 0xFF, 0xFF, 0xFF, 0xFF],
            [0x97, 0xDB, 0xFF, 0xFF, 0xFF, 0xFF, 0x61],
            [0x97, 0xA1, 0x6D, 0xC6, 0xFF, 0xFF, 0xFF, 0xFF, 0x00],
            [0x97, 0xA1, 0x6D, 0xC4, 0x00, 0xA1, 0x74, 0xA1, 0x72, 0xDF, 0xFF, 0xFF, 0xFF, 0xFF],
        ];
        foreach (var liar in liars)
        {
            Assert.That(() => ReadEnvelopeAsync(Framed(liar)), Throws.InstanceOf<MalformedMessageException>(), Convert.ToHexString(liar));
            Assert.That(() => InferRequest.Parser.Decode(liar), Throws.InstanceOf<MalformedMessageException>(), Convert.ToHexString(liar));
        }
    }

    [TestCase(10_000)]
    [TestCase(4_000_000)]
    [TestCase(MessagePackWire.MaxDepth + 1)]
    public void DeeplyNestedInput_IsMalformed_NotAStackOverflow(int depth)
    {
        var nested = Nest(depth);
        // As the whole message, as a member we do not know (which the reader must skip), as a known
        // list's element, and as a metadata value.
        byte[] unknownMember = [0x98, 0xA1, 0x6D, 0xC4, 0x00, 0x00, 0xA0, 0xA0, 0x80, 0xC2, .. nested];
        byte[] inStop = [0x97, 0xA0, 0xA0, 0xA0, 0x00, 0x00, 0xC0, 0x91, .. nested];
        byte[] inMetadata = [0x96, 0xA1, 0x6D, 0xC4, 0x00, 0x00, 0xA0, 0xA0, 0x81, 0xA1, 0x6B, .. nested];

        Assert.That(() => ReadEnvelopeAsync(Framed(nested)), Throws.InstanceOf<MalformedMessageException>());
        Assert.That(() => ReadEnvelopeAsync(Framed(unknownMember)), Throws.InstanceOf<MalformedMessageException>());
        Assert.That(() => ReadEnvelopeAsync(Framed(inMetadata)), Throws.InstanceOf<MalformedMessageException>());
        Assert.That(() => InferRequest.Parser.Decode(nested), Throws.InstanceOf<MalformedMessageException>());
        Assert.That(() => InferRequest.Parser.Decode(inStop), Throws.InstanceOf<MalformedMessageException>());
        Assert.That(() => MessagePackRpcCodec<ResponseFrame>.Instance.Decode(nested), Throws.InstanceOf<MalformedMessageException>());
    }

    [Test]
    public void NestingWithinTheLimit_StillDecodesAsAnUnknownMember()
    {
        byte[] unknownMember = [0x98, 0xA1, 0x6D, 0xC4, 0x00, 0x00, 0xA0, 0xA0, 0x80, 0xC2, .. Nest(MessagePackWire.MaxDepth - 2)];

        Assert.That(MessagePackRpcCodec<RequestEnvelope>.Instance.Decode(unknownMember).Method, Is.EqualTo("m"));
    }

    [Test]
    public async Task RandomAndMutatedBytes_DecodeOrFailWithATypedError()
    {
        var seed = TestSeed.Choose();
        var random = new Random(seed);
        var valid = SampleBody;
        // 1,000 inputs, not 3,000: nearly every one fails, and MessagePack's failures are exceptions wrapped
        // in exceptions, which made this take most of a second. 500 mutations (1-5 bytes, a quarter also cut
        // short) still change every byte of the sample many times over, and 500 random inputs span 0-299 bytes.
        for (var i = 0; i < 1_000; i++)
        {
            byte[] body;
            if (i % 2 == 0)
            {
                body = new byte[random.Next(0, 300)];
                random.NextBytes(body);
            }
            else
            {
                body = (byte[])valid.Clone();
                for (var flips = random.Next(1, 6); flips > 0; flips--) body[random.Next(body.Length)] = (byte)random.Next(256);
                if (random.Next(4) == 0) body = body[..random.Next(body.Length)];
            }

            var what = $"seed {seed}, case {i}: {Convert.ToHexString(body)}";
            try
            {
                await ReadEnvelopeAsync(Framed(body));
            }
            catch (MalformedMessageException)
            {
            }
            catch (Exception e)
            {
                Assert.Fail($"envelope reader threw {e.GetType().Name} ({e.Message}) for {what}");
            }

            try
            {
                InferRequest.Parser.Decode(body);
            }
            catch (MalformedMessageException)
            {
            }
            catch (Exception e)
            {
                Assert.Fail($"InferRequest decoder threw {e.GetType().Name} ({e.Message}) for {what}");
            }
        }
    }

    [Test]
    public void TrailingBytesAfterTheMessage_AreMalformed()
    {
        byte[] twoMessages = [.. SampleBody, .. SampleBody];

        Assert.That(() => MessagePackRpcCodec<RequestEnvelope>.Instance.Decode(twoMessages), Throws.InstanceOf<MalformedMessageException>());
    }

    [Test]
    public void AResponseFrame_WithNoneOrSeveralKinds_IsInvalid()
    {
        Assert.That(new ResponseFrame().Kind, Is.EqualTo(ResponseFrameKind.Invalid));
        Assert.That(new ResponseFrame { Payload = new byte[1], End = true }.Kind, Is.EqualTo(ResponseFrameKind.Invalid));
        Assert.That(new ResponseFrame { Payload = ReadOnlyMemory<byte>.Empty }.Kind, Is.EqualTo(ResponseFrameKind.Payload));
        var decoded = MessagePackRpcCodec<ResponseFrame>.Instance.Decode(MessagePackRpcCodec<ResponseFrame>.Instance.Encode(new ResponseFrame { Payload = ReadOnlyMemory<byte>.Empty }));
        Assert.That(decoded.Kind, Is.EqualTo(ResponseFrameKind.Payload), "an empty payload is still a payload");
    }

    /// <summary><paramref name="depth"/> arrays, each holding the next, the innermost holding nil.</summary>
    private static byte[] Nest(int depth)
    {
        var bytes = new byte[depth + 1];
        Array.Fill(bytes, (byte)0x91, 0, depth);
        bytes[depth] = 0xC0;
        return bytes;
    }
}
