using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>A responder session facing a hand-driven initiator that writes whatever bytes the test wants.</summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class YamuxMaliciousPeerTests
{
    private static readonly YamuxOptions Options = new() { KeepAliveInterval = null };

    private static (YamuxSession Session, RawYamuxPeer Peer) Create(YamuxOptions? options = null)
    {
        var (a, b) = DuplexStreamPair.Create();
        return (new YamuxSession(a, isInitiator: false, options ?? Options), new RawYamuxPeer(b));
    }

    private static async Task<YamuxException> FailureOf(YamuxSession session, CancellationToken token)
    {
        try
        {
            await session.Completion.WaitAsync(token);
        }
        catch (YamuxException ex)
        {
            Assert.That(session.IsClosed, Is.True);
            return ex;
        }

        Assert.Fail("the session ended without a YamuxException");
        throw new InvalidOperationException();
    }

    [Test]
    public async Task Session_FailsWithProtocolError_WhenPeerOverrunsWindow(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.Syn, 1, YamuxOptions.DefaultWindowSize, new byte[YamuxOptions.DefaultWindowSize]);
        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.None, 1, 1, [42]);

        var error = await FailureOf(session, token);
        Assert.That(error.Message, Does.Contain("window"));
        var (goAway, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.GoAway, token);
        Assert.That(goAway.Length, Is.EqualTo((uint)YamuxGoAwayCode.ProtocolError));
    }

    [Test]
    public async Task Session_FailsWithoutReadingPayload_WhenDataLengthIsHuge(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        // No payload follows: the session must refuse on the header alone, not allocate or wait for 4 GiB.
        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.Syn, 1, uint.MaxValue);

        Assert.That((await FailureOf(session, token)).Message, Does.Contain("window"));
    }

    [Test]
    public async Task Session_FailsWithoutReadingPayload_WhenDataForUnknownStreamIsHuge(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.None, 9, uint.MaxValue);

        Assert.That(await FailureOf(session, token), Is.TypeOf<YamuxException>());
    }

    [TestCase((byte)1, (byte)0, TestName = "Session_Fails_WhenVersionIsNotZero")]
    [TestCase((byte)0, (byte)4, TestName = "Session_Fails_WhenFrameTypeIsUnknown")]
    [TestCase((byte)0, (byte)255, TestName = "Session_Fails_WhenFrameTypeIs255")]
    public async Task Session_Fails_OnMalformedHeader(byte version, byte type)
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteRawAsync([version, type, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);

        Assert.That(await FailureOf(session, cancel.Token), Is.TypeOf<YamuxException>());
    }

    [Test]
    public async Task Session_Fails_WhenPeerOpensStreamWithWrongParity(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 2, 0);

        Assert.That((await FailureOf(session, token)).Message, Does.Contain("parity"));
    }

    [Test]
    public async Task Session_Fails_WhenPeerReusesOpenStreamId(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 1, 0);
        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 1, 0);

        Assert.That((await FailureOf(session, token)).Message, Does.Contain("again"));
    }

    [Test]
    public async Task Session_Fails_WhenStreamFrameUsesSessionId(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.Syn, 0, 0);

        Assert.That(await FailureOf(session, token), Is.TypeOf<YamuxException>());
    }

    [Test]
    public async Task Session_Fails_WhenConnectionEndsInsideHeader(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;

        await peer.WriteRawAsync([0, 0, 0]);
        await peer.DisposeAsync();

        Assert.That((await FailureOf(session, token)).Message, Does.Contain("header"));
    }

    [Test]
    public async Task Session_FailsAndResetsStreams_WhenConnectionEndsInsidePayload(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 1, 0);
        await using var stream = await session.AcceptStreamAsync(token);
        var read = stream.ReadAsync(new byte[100], token).AsTask();
        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.None, 1, 100, new byte[10]);
        await peer.DisposeAsync();

        Assert.That((await FailureOf(session, token)).Message, Does.Contain("payload"));
        Assert.That(async () => await read, Throws.TypeOf<YamuxStreamResetException>().With.InnerException.TypeOf<YamuxException>());
    }

    [Test]
    public async Task Session_EndsWithTypedErrorOrCleanly_OnRandomBytes(CancellationToken token)
    {
        var random = TestSeed.CreateRandom();
        for (var round = 0; round < 40; round++)
        {
            var (session, peer) = Create();
            await using var _ = session;
            var bytes = new byte[random.Next(1, 4096)];
            random.NextBytes(bytes);
            if (round % 2 == 1)
            {
                // Plausible headers get past the version check and exercise the frame handlers.
                for (var i = 0; i + YamuxHeader.Size <= bytes.Length; i += YamuxHeader.Size)
                {
                    bytes[i] = 0;
                    bytes[i + 1] %= 5;
                    bytes[i + 8] = 0;
                }
            }

            await peer.WriteRawAsync(bytes);
            await peer.DisposeAsync();

            try
            {
                await session.Completion.WaitAsync(token);
            }
            catch (YamuxException)
            {
                // A typed protocol error is the expected outcome for most inputs.
            }

            Assert.That(session.IsClosed, Is.True);
        }
    }

    [Test]
    public async Task Session_IgnoresDataForUnknownStream_AndAnswersPing(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.None, 7, 5, [1, 2, 3, 4, 5]);
        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.None, 9, 1000);
        await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Syn, 0, 0xCAFE);

        var (pong, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Ack, token);
        Assert.That(pong.Length, Is.EqualTo(0xCAFEu));
        Assert.That(session.IsClosed, Is.False);
    }

    [Test]
    public async Task Session_Fails_WhenPeerGoesAwayWithProtocolError(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.GoAway, YamuxFlags.None, 0, (uint)YamuxGoAwayCode.ProtocolError);

        Assert.That((await FailureOf(session, token)).Message, Does.Contain("ProtocolError"));
    }

    [Test]
    public async Task AcceptStream_SendsAck_AndRejectedStreamsGetRst(CancellationToken token)
    {
        var (session, peer) = Create(new YamuxOptions { KeepAliveInterval = null, MaxInboundStreams = 1 });
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.Syn, 1, 3, [1, 2, 3]);
        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.Syn, 3, 3, [4, 5, 6]);
        var (rst, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.WindowUpdate, token);
        Assert.That((rst.StreamId, rst.Flags), Is.EqualTo((3u, YamuxFlags.Rst)));

        await using var stream = await session.AcceptStreamAsync(token);
        var (ack, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.WindowUpdate, token);
        Assert.That((ack.StreamId, ack.Flags), Is.EqualTo((1u, YamuxFlags.Ack)));
        var buffer = new byte[3];
        await stream.ReadExactlyAsync(buffer, token);
        Assert.That(buffer, Is.EqualTo(new byte[] { 1, 2, 3 }));
    }

    [Test]
    public async Task Stream_FailsWithReset_WhenPeerSendsDataAfterFin(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;

        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.Syn | YamuxFlags.Fin, 1, 1, [1]);
        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.None, 1, 1, [2]);
        await using var stream = await session.AcceptStreamAsync(token);

        var (rst, _) = await peer.ReadFrameAsync(h => (h.Flags & YamuxFlags.Rst) != 0, token);
        Assert.That(rst.StreamId, Is.EqualTo(1u));
        Assert.That(async () => await stream.ReadAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());
        Assert.That(session.IsClosed, Is.False);
    }

    [Test]
    public async Task Stream_HoldsFewPooledArrays_WhenPeerFillsItsWindowWithOneByteFrames(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;
        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 1, 0);
        await using var stream = await session.AcceptStreamAsync(token);

        // 4,096 one-byte frames: 4 KiB of window, which once cost a pooled array and two queue slots each.
        var sent = new byte[4096];
        for (var i = 0; i < sent.Length; i++) sent[i] = (byte)(i * 7 + i / 256);

        await peer.WriteRawAsync(DataFrames(1, sent, Enumerable.Repeat(1, sent.Length)));
        await RoundTripAsync(peer, token);

        Assert.That(stream.BufferedCount, Is.EqualTo(sent.Length));
        var (count, bytes) = stream.HeldSegments;
        Assert.That(count, Is.LessThanOrEqualTo(2), "small frames share pooled arrays");
        Assert.That(bytes, Is.LessThanOrEqualTo(2 * sent.Length), "memory held stays near the bytes buffered");

        var received = new byte[sent.Length];
        await stream.ReadExactlyAsync(received, token);
        Assert.That(received.AsSpan().SequenceEqual(sent), Is.True, "the bytes come back as sent, in order");
        Assert.That(stream.HeldSegments, Is.EqualTo((0, 0L)), "every array went back to the pool");
    }

    [Test]
    public async Task Stream_ReadsBackFramesOfMixedSizes_InOrder(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;
        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 1, 0);
        await using var stream = await session.AcceptStreamAsync(token);

        // Small frames around the reader's 2 KiB limit for copying, and large ones read straight into an
        // array of their own, each followed by small ones that may fill that array's spare room.
        int[] sizes = [1, 2048, 1, 2049, 2047, 2047, 3, 4096, 1000, 60000, 1, 1, 2000];
        var sent = new byte[3 * sizes.Sum()];
        new Random(1).NextBytes(sent);

        await peer.WriteRawAsync(DataFrames(1, sent, sizes.Concat(sizes).Concat(sizes)));
        await RoundTripAsync(peer, token);

        Assert.That(stream.BufferedCount, Is.EqualTo(sent.Length));
        Assert.That(stream.HeldSegments.Bytes, Is.LessThanOrEqualTo(2 * sent.Length));
        var received = new byte[sent.Length];
        // Reads of an odd size, so copies start and end inside arrays.
        for (var at = 0; at < received.Length;)
        {
            at += await stream.ReadAsync(received.AsMemory(at, Math.Min(777, received.Length - at)), token);
        }

        Assert.That(received.AsSpan().SequenceEqual(sent), Is.True, "the bytes come back as sent, in order");
        Assert.That(stream.HeldSegments, Is.EqualTo((0, 0L)));
    }

    /// <summary><paramref name="payload"/> as consecutive DATA frames on <paramref name="streamId"/>, one per size in <paramref name="sizes"/>, in one buffer.</summary>
    private static byte[] DataFrames(uint streamId, byte[] payload, IEnumerable<int> sizes)
    {
        var frames = new List<byte>(payload.Length);
        Span<byte> header = stackalloc byte[YamuxHeader.Size];
        var from = 0;
        foreach (var size in sizes)
        {
            new YamuxHeader(YamuxFrameType.Data, YamuxFlags.None, streamId, (uint)size).Write(header);
            frames.AddRange(header);
            frames.AddRange(payload.AsSpan(from, size));
            from += size;
        }
        Assert.That(from, Is.EqualTo(payload.Length), "the sizes cover the payload");
        return [.. frames];
    }

    /// <summary>A ping answered: the session has handled every frame written before it.</summary>
    private static async Task RoundTripAsync(RawYamuxPeer peer, CancellationToken token)
    {
        await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Syn, 0, 0xBEEF);
        await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Ack && h.Length == 0xBEEF, token);
    }
}
