using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;

namespace P2PInference.Tests.Unit.Noise;

/// <summary>
/// The rest of <see cref="Stream"/> on a secure stream: what a caller using the synchronous or
/// array overloads gets, what it cannot do (seek), and what a closed stream says.
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class NoiseSecureStreamSurfaceTests
{
    private static readonly KeyPair Alice = NoiseTestPeers.Key(1);
    private static readonly KeyPair Bob = NoiseTestPeers.Key(2);

    [Test]
    public async Task SynchronousAndArrayOverloads_CarryTheSameBytes(CancellationToken cancellationToken)
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
    public async Task EmptyReadsAndWrites_ReturnAtOnce(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;

        await initiator.WriteAsync(ReadOnlyMemory<byte>.Empty, cancellationToken);

        Assert.That(await responder.ReadAsync(Memory<byte>.Empty, cancellationToken), Is.Zero);
    }

    [Test]
    public async Task Seeking_IsNotSupported_AndAClosedStreamSaysItCannotReadOrWrite(CancellationToken cancellationToken)
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
