using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.Tests.Unit.Protocols;

namespace P2PInference.Tests.Unit.Transport;

/// <summary>The stream a connection upgrade runs on: one turn's messages leave in one write, reads come from one transport read.</summary>
[TestFixture]
public sealed class UpgradeStreamTests
{
    private static CancellationToken Token => CancellationToken.None;

    [Test]
    public async Task Writes_AreHeldUntilAReadMustWait_ThenLeaveInOneWrite()
    {
        var transport = new ScriptedStream("answer"u8.ToArray());
        await using var upgrade = new UpgradeStream(transport);

        await upgrade.WriteAsync("header,"u8.ToArray(), Token);
        await upgrade.FlushAsync(Token);
        await upgrade.WriteAsync("proposal"u8.ToArray(), Token);
        await upgrade.FlushAsync(Token);
        Assert.That(transport.Writes, Is.Empty, "nothing leaves before this side waits for the peer");

        var first = new byte[1];
        await upgrade.ReadExactlyAsync(first, Token);

        Assert.That(transport.Writes, Has.Count.EqualTo(1));
        Assert.That(transport.Writes[0], Is.EqualTo("header,proposal"u8.ToArray()));
        Assert.That(first, Is.EqualTo("a"u8.ToArray()));
    }

    [Test]
    public async Task Reads_ServeWhatOneTransportReadBrought_AndDetachHandsOverTheRest()
    {
        var transport = new ScriptedStream("hello, secure world"u8.ToArray());
        await using var upgrade = new UpgradeStream(transport);

        var hello = new byte[5];
        await upgrade.ReadExactlyAsync(hello, Token);
        Assert.That(transport.Consumed, Is.EqualTo(19), "one transport read took everything available");
        Assert.That(upgrade.DataAvailable, Is.True);
        await upgrade.WriteAsync("last handshake message"u8.ToArray(), Token);

        var inner = upgrade.Detach(out var received, out var unsent);

        Assert.That(inner, Is.SameAs(transport));
        Assert.That(hello, Is.EqualTo("hello"u8.ToArray()));
        Assert.That(received, Is.EqualTo(", secure world"u8.ToArray()), "bytes past the handshake belong to the secure channel");
        Assert.That(unsent, Is.EqualTo("last handshake message"u8.ToArray()), "the held message leaves with the secure channel's first write");
        Assert.That(transport.Writes, Is.Empty);
    }

    [Test]
    public async Task IsPassThrough_OnlyOnceReleased_AndWithNothingBufferedEitherWay()
    {
        var transport = new ScriptedStream("ab"u8.ToArray());
        await using var upgrade = new UpgradeStream(transport);
        Assert.That(upgrade.IsPassThrough, Is.False, "writes are held until released");

        await upgrade.ReleaseAsync(Token);
        Assert.That(upgrade.IsPassThrough, Is.True);

        var one = new byte[1];
        await upgrade.ReadExactlyAsync(one, Token);
        Assert.That(upgrade.IsPassThrough, Is.False, "a byte the transport gave is only here");

        await upgrade.ReadExactlyAsync(one, Token);
        Assert.That(upgrade.IsPassThrough, Is.True);
        Assert.That(upgrade.Detach(out _, out _), Is.SameAs(transport));
        Assert.That(upgrade.IsPassThrough, Is.False, "detached");
    }

    [Test]
    public async Task Release_SendsWhatIsHeld_AndLetsLaterWritesThrough()
    {
        var transport = new ScriptedStream([]);
        await using var upgrade = new UpgradeStream(transport);
        await upgrade.WriteAsync("held"u8.ToArray(), Token);

        await upgrade.ReleaseAsync(Token);
        await upgrade.WriteAsync("direct"u8.ToArray(), Token);

        Assert.That(transport.Writes, Is.EqualTo(new[] { "held"u8.ToArray(), "direct"u8.ToArray() }));
    }

    [Test]
    public async Task Dispose_DisposesTheTransport_UnlessItWasDetached()
    {
        var kept = new MemoryStream();
        var detached = new UpgradeStream(kept);
        detached.Detach(out _, out _);
        await detached.DisposeAsync();
        Assert.That(kept.CanRead, Is.True, "the secure channel owns a detached transport");

        var closed = new MemoryStream();
        await new UpgradeStream(closed).DisposeAsync();
        Assert.That(closed.CanRead, Is.False);
    }

    [Test]
    public async Task EndOfStream_IsAZeroRead()
    {
        var transport = new ScriptedStream("ab"u8.ToArray());
        await using var upgrade = new UpgradeStream(transport);
        var buffer = new byte[8];

        Assert.That(await upgrade.ReadAsync(buffer, Token), Is.EqualTo(2));
        Assert.That(await upgrade.ReadAsync(buffer, Token), Is.Zero);
    }

    // A plaintext session keeps this stream for the connection's life: the muxer's read loop waits
    // between frames with a zero-byte read so that an idle connection holds no buffer. Answered at
    // once, that loop would rent a read buffer and hold it (and this stream's own) on every idle connection.
    [Test]
    public async Task ZeroByteRead_WaitsForThePeersBytes_WithoutTakingThem()
    {
        var (local, remote) = DuplexStreamPair.Create();
        await using var upgrade = new UpgradeStream(local);
        await upgrade.ReleaseAsync(Token);

        var wait = upgrade.ReadAsync(Memory<byte>.Empty, Token).AsTask();
        Assert.That(wait.IsCompleted, Is.False, "nothing has arrived yet");

        await remote.WriteAsync("frame"u8.ToArray(), Token);
        Assert.That(await wait, Is.Zero);
        var frame = new byte[5];
        await upgrade.ReadExactlyAsync(frame, Token);
        Assert.That(frame, Is.EqualTo("frame"u8.ToArray()), "the zero-byte read took nothing");
        await remote.DisposeAsync();
    }
}
