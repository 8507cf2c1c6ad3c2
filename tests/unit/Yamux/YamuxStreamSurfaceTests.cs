using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>The rest of <see cref="Stream"/> on a Yamux stream: synchronous and array overloads, and no seeking.</summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class YamuxStreamSurfaceTests
{
    private static readonly YamuxOptions NoKeepAlive = new() { KeepAliveInterval = null };

    [Test]
    public async Task SynchronousAndArrayOverloads_CarryTheSameBytes(CancellationToken token)
    {
        var (a, b) = DuplexStreamPair.Create();
        await using var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);
        await using var server = new YamuxSession(b, isInitiator: false, NoKeepAlive);
        await using var stream = await client.OpenStreamAsync(token);
        var accepting = server.AcceptStreamAsync(token).AsTask();

        stream.Write("abc"u8.ToArray(), 0, 3);
        await stream.WriteAsync("defg"u8.ToArray(), 0, 4, token);
        stream.Flush();
        await stream.FlushAsync(token);
        await using var inbound = await accepting;

        var received = new byte[7];
        var total = inbound.Read(received, 0, 3);
        while (total < 5) total += inbound.Read(received.AsSpan(total, 5 - total));
        while (total < 7) total += await inbound.ReadAsync(received, total, 7 - total, token);

        Assert.That(received, Is.EqualTo("abcdefg"u8.ToArray()));
    }

    [Test]
    public async Task Seeking_IsNotSupported(CancellationToken token)
    {
        var (a, b) = DuplexStreamPair.Create();
        await using var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);
        await using var server = new YamuxSession(b, isInitiator: false, NoKeepAlive);
        await using var stream = await client.OpenStreamAsync(token);

        Assert.Multiple(() =>
        {
            Assert.That((stream.CanRead, stream.CanWrite, stream.CanSeek), Is.EqualTo((true, true, false)));
            Assert.Throws<NotSupportedException>(() => _ = stream.Length);
            Assert.Throws<NotSupportedException>(() => _ = stream.Position);
            Assert.Throws<NotSupportedException>(() => stream.Position = 1);
            Assert.Throws<NotSupportedException>(() => stream.Seek(0, SeekOrigin.Begin));
            Assert.Throws<NotSupportedException>(() => stream.SetLength(1));
        });
    }
}
