using System.Buffers.Binary;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Noise;

[TestFixture]
[CancelAfter(10000)]
public sealed class NoiseSecureStreamTests
{
    private static readonly KeyPair Alice = NoiseTestPeers.Key(1);
    private static readonly KeyPair Bob = NoiseTestPeers.Key(2);

    [Test]
    public async Task SecureStream_CarriesDataBothWays(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;

        await initiator.WriteAsync("ping"u8.ToArray(), cancellationToken);
        await responder.WriteAsync("pong!"u8.ToArray(), cancellationToken);

        Assert.That(await ReadExactlyAsync(responder, 4, cancellationToken), Is.EqualTo("ping"u8.ToArray()));
        Assert.That(await ReadExactlyAsync(initiator, 5, cancellationToken), Is.EqualTo("pong!"u8.ToArray()));
    }

    [Test]
    public async Task SecureStream_ServesOneFrameAcrossManySmallReads(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;
        var data = new byte[1000];
        TestSeed.CreateRandom().NextBytes(data);

        await initiator.WriteAsync(data, cancellationToken);
        var received = new List<byte>();
        var chunk = new byte[7];
        while (received.Count < data.Length)
        {
            var read = await responder.ReadAsync(chunk, cancellationToken);
            Assert.That(read, Is.InRange(1, 7));
            received.AddRange(chunk.AsSpan(0, read).ToArray());
        }

        Assert.That(received.ToArray(), Is.EqualTo(data));
    }

    [Test]
    public async Task SecureStream_RoundTripsOneMebibyte(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;
        var data = new byte[1 << 20];
        TestSeed.CreateRandom().NextBytes(data);

        var send = initiator.WriteAsync(data, cancellationToken).AsTask();
        var echoed = ReadExactlyAsync(responder, data.Length, cancellationToken);
        await send;
        var back = responder.WriteAsync(await echoed, cancellationToken).AsTask();
        var result = await ReadExactlyAsync(initiator, data.Length, cancellationToken);
        await back;

        Assert.That(result.AsSpan().SequenceEqual(data), Is.True);
    }

    [Test]
    public async Task SecureStream_DeliversMixedFrameSizes_WhileReceiveBufferGrowsAndShrinks(CancellationToken cancellationToken)
    {
        // Small frames are received in a small buffer and large ones in a large one; switching in
        // either direction, with frames split across reads of any size, must not lose or reorder bytes.
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;
        var random = TestSeed.CreateRandom();
        int[] sizes = [10, 70_000, 5, 3_000, 4_100, 65_519, 1, 200_000, 17, 2_048, 9_000, 3];
        var data = new byte[sizes.Sum()];
        random.NextBytes(data);

        var send = Task.Run(async () =>
        {
            var offset = 0;
            foreach (var size in sizes)
            {
                await initiator.WriteAsync(data.AsMemory(offset, size), cancellationToken);
                offset += size;
            }
        }, cancellationToken);
        var received = new byte[data.Length];
        var total = 0;
        while (total < received.Length)
        {
            var want = Math.Min(received.Length - total, random.Next(1, 80_000));
            var read = await responder.ReadAsync(received.AsMemory(total, want), cancellationToken);
            Assert.That(read, Is.GreaterThan(0));
            total += read;
        }
        await send;

        Assert.That(received.AsSpan().SequenceEqual(data), Is.True);
    }

    [Test]
    public async Task SecureStream_SplitsLargeWritesIntoFramesOfAtMost65535Bytes(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiatorTask = NoiseHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancellationToken);
        await using var responder = await NoiseHandshake.RespondAsync(b, Bob, cancellationToken);
        await using var initiator = await initiatorTask;
        const int size = (1 << 20) + 5;

        var write = initiator.WriteAsync(new byte[size], cancellationToken).AsTask();
        // Read the wire beneath the responder's secure stream.
        var frames = new List<int>();
        var plaintext = 0;
        var header = new byte[2];
        while (plaintext < size)
        {
            await b.ReadExactlyAsync(header, cancellationToken);
            var length = BinaryPrimitives.ReadUInt16BigEndian(header);
            frames.Add(length);
            plaintext += length - 16;
            await b.ReadExactlyAsync(new byte[length], cancellationToken);
        }
        await write;

        Assert.Multiple(() =>
        {
            Assert.That(plaintext, Is.EqualTo(size));
            Assert.That(frames, Has.All.InRange(17, 65535));
            Assert.That(frames, Has.Count.EqualTo(17)); // 16 full frames of 65519 bytes and a remainder
        });
    }

    [Test]
    public async Task SecureStream_ReadsAndWritesConcurrently(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;
        var random = TestSeed.CreateRandom();
        var toBob = new byte[300_000];
        var toAlice = new byte[200_000];
        random.NextBytes(toBob);
        random.NextBytes(toAlice);

        async Task WriteInPiecesAsync(Stream stream, byte[] data)
        {
            for (var at = 0; at < data.Length; at += 10_000)
                await stream.WriteAsync(data.AsMemory(at, Math.Min(10_000, data.Length - at)), cancellationToken);
        }

        var tasks = new Task[]
        {
            Task.Run(() => WriteInPiecesAsync(initiator, toBob), cancellationToken),
            Task.Run(() => WriteInPiecesAsync(responder, toAlice), cancellationToken),
        };
        var bobGot = Task.Run(() => ReadExactlyAsync(responder, toBob.Length, cancellationToken), cancellationToken);
        var aliceGot = Task.Run(() => ReadExactlyAsync(initiator, toAlice.Length, cancellationToken), cancellationToken);
        await Task.WhenAll(tasks);

        Assert.That((await bobGot).AsSpan().SequenceEqual(toBob), Is.True);
        Assert.That((await aliceGot).AsSpan().SequenceEqual(toAlice), Is.True);
    }

    [Test]
    public async Task Read_ReturnsZero_WhenRemoteClosesAtFrameBoundary(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var __ = responder;

        await initiator.WriteAsync("last"u8.ToArray(), cancellationToken);
        await initiator.DisposeAsync();

        Assert.That(await ReadExactlyAsync(responder, 4, cancellationToken), Is.EqualTo("last"u8.ToArray()));
        Assert.That(await responder.ReadAsync(new byte[10], cancellationToken), Is.Zero);
    }

    [Test]
    public async Task Read_Throws_WhenByteIsCorrupted_AndStreamStaysUnusable(CancellationToken cancellationToken)
    {
        NoiseTestPeers.TamperingStream? tamper = null;
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken,
            raw => tamper = new NoiseTestPeers.TamperingStream(raw));
        await using var _ = initiator;
        await using var __ = responder;

        tamper!.FlipBitInNextWrite(10);
        await initiator.WriteAsync(new byte[100], cancellationToken);

        var failure = Assert.ThrowsAsync<NoiseException>(() => ReadSomeAsync(responder, cancellationToken));
        Assert.That(failure!.Message, Does.Contain("decrypt"));
        Assert.ThrowsAsync<NoiseException>(() => ReadSomeAsync(responder, cancellationToken));
        Assert.ThrowsAsync<NoiseException>(async () => await responder.WriteAsync(new byte[1], cancellationToken));
    }

    [Test]
    public async Task Read_Throws_WhenLengthPrefixIsCorrupted(CancellationToken cancellationToken)
    {
        NoiseTestPeers.TamperingStream? tamper = null;
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken,
            raw => tamper = new NoiseTestPeers.TamperingStream(raw));
        await using var _ = initiator;
        await using var __ = responder;

        tamper!.FlipBitInNextWrite(1); // the frame claims one byte fewer (or more) than it carries
        await initiator.WriteAsync(new byte[100], cancellationToken);
        await initiator.WriteAsync(new byte[100], cancellationToken);

        Assert.ThrowsAsync<NoiseException>(() => ReadSomeAsync(responder, cancellationToken));
    }

    [Test]
    public async Task SyncDispose_ClosesTheConnectionUnderneath_AndLaterWritesFailCleanly(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiatorTask = NoiseHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancellationToken);
        await using var responder = await NoiseHandshake.RespondAsync(b, Bob, cancellationToken);
        var initiator = await initiatorTask;

        // A `using` (not `await using`) block, or a framework that only knows IDisposable, ends the stream so.
        initiator.Dispose();
        initiator.Dispose();

        Assert.That(await ReadSomeAsync(responder, cancellationToken), Is.Zero, "the peer sees the connection end");
        Assert.ThrowsAsync<ObjectDisposedException>(async () => await initiator.WriteAsync(new byte[] { 1 }, cancellationToken));
    }

    [Test]
    public async Task Read_Throws_WhenFrameIsTruncated(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiatorTask = NoiseHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancellationToken);
        await using var responder = await NoiseHandshake.RespondAsync(b, Bob, cancellationToken);
        await using var initiator = await initiatorTask;

        var frame = new byte[2 + 10];
        BinaryPrimitives.WriteUInt16BigEndian(frame, 40);
        await a.WriteAsync(frame, cancellationToken); // beneath the initiator's secure stream
        await a.DisposeAsync();

        var failure = Assert.ThrowsAsync<NoiseException>(() => ReadSomeAsync(responder, cancellationToken));
        Assert.That(failure!.Message, Does.Contain("inside a frame"));
    }

    [Test]
    public async Task Read_Throws_WhenLengthPrefixIsMaximalThenEof(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiatorTask = NoiseHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancellationToken);
        await using var responder = await NoiseHandshake.RespondAsync(b, Bob, cancellationToken);
        await using var initiator = await initiatorTask;

        await a.WriteAsync(new byte[] { 0xFF, 0xFF }, cancellationToken);
        await a.DisposeAsync();

        Assert.ThrowsAsync<NoiseException>(() => ReadSomeAsync(responder, cancellationToken));
    }

    [Test]
    public async Task Read_Throws_WhenFrameIsShorterThanTag(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiatorTask = NoiseHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancellationToken);
        await using var responder = await NoiseHandshake.RespondAsync(b, Bob, cancellationToken);
        await using var initiator = await initiatorTask;

        await a.WriteAsync(new byte[] { 0x00, 0x05, 1, 2, 3, 4, 5 }, cancellationToken);

        Assert.ThrowsAsync<NoiseException>(() => ReadSomeAsync(responder, cancellationToken));
    }

    [Test]
    public async Task Read_Throws_WhenFrameIsReplayed(CancellationToken cancellationToken)
    {
        NoiseTestPeers.TamperingStream? tamper = null;
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken,
            raw => tamper = new NoiseTestPeers.TamperingStream(raw));
        await using var _ = initiator;
        await using var __ = responder;

        tamper!.DuplicateNextWrite();
        await initiator.WriteAsync("once"u8.ToArray(), cancellationToken);

        Assert.That(await ReadExactlyAsync(responder, 4, cancellationToken), Is.EqualTo("once"u8.ToArray()));
        Assert.ThrowsAsync<NoiseException>(() => ReadSomeAsync(responder, cancellationToken));
    }

    [Test]
    public async Task Write_Throws_AfterDispose(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var __ = responder;
        await initiator.DisposeAsync();

        Assert.ThrowsAsync<ObjectDisposedException>(async () => await initiator.WriteAsync(new byte[1], cancellationToken));
        Assert.ThrowsAsync<ObjectDisposedException>(() => ReadSomeAsync(initiator, cancellationToken));
    }

    private static async Task<int> ReadSomeAsync(Stream stream, CancellationToken cancellationToken) =>
        await stream.ReadAsync(new byte[100], cancellationToken);

    private static async Task<byte[]> ReadExactlyAsync(Stream stream, int count, CancellationToken cancellationToken)
    {
        var buffer = new byte[count];
        await stream.ReadExactlyAsync(buffer, cancellationToken);
        return buffer;
    }

    [Test]
    public async Task SecureStream_SynchronousAndArrayOverloads_CarryTheSameBytes(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;

        initiator.Write("abc"u8);
        initiator.Write("defg"u8.ToArray(), 0, 4);
        await initiator.WriteAsync("hi"u8.ToArray(), 0, 2, cancellationToken);
        initiator.Flush();
        await initiator.FlushAsync(cancellationToken);

        var received = new byte[9];
        var total = responder.Read(received, 0, 3);
        while (total < 7) total += responder.Read(received.AsSpan(total, 7 - total));
        while (total < 9) total += await responder.ReadAsync(received, total, 9 - total, cancellationToken);

        Assert.That(received, Is.EqualTo("abcdefghi"u8.ToArray()));
    }

    [Test]
    public async Task SecureStream_EmptyReadsAndWrites_ReturnAtOnce(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;

        await initiator.WriteAsync(ReadOnlyMemory<byte>.Empty, cancellationToken);

        Assert.That(await responder.ReadAsync(Memory<byte>.Empty, cancellationToken), Is.Zero);
    }

    [Test]
    public async Task SecureStream_Seeking_IsNotSupported_AndAClosedStreamSaysItCannotReadOrWrite(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var __ = responder;

        Assert.Multiple(() =>
        {
            Assert.That(initiator.CanSeek, Is.False);
            Assert.That((initiator.CanRead, initiator.CanWrite), Is.EqualTo((true, true)));
            Assert.Throws<NotSupportedException>(() => _ = initiator.Length);
            Assert.Throws<NotSupportedException>(() => _ = initiator.Position);
            Assert.Throws<NotSupportedException>(() => initiator.Position = 1);
            Assert.Throws<NotSupportedException>(() => initiator.Seek(0, SeekOrigin.Begin));
            Assert.Throws<NotSupportedException>(() => initiator.SetLength(1));
        });

        await initiator.DisposeAsync();

        Assert.That((initiator.CanRead, initiator.CanWrite), Is.EqualTo((false, false)));
        Assert.That(async () => await initiator.WriteAsync("x"u8.ToArray(), cancellationToken), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(async () => await initiator.ReadAsync(new byte[1], cancellationToken), Throws.InstanceOf<ObjectDisposedException>());
    }
}
