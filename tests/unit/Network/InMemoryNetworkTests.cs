using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Network;

[TestFixture]
[CancelAfter(10000)]
public sealed class InMemoryNetworkTests
{
    [Test]
    public async Task Dial_CarriesDataBothWays_WhenNodeListens(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);

        await dialer.Stream.WriteAsync("hello"u8.ToArray(), ct);
        await accepted.Stream.WriteAsync("world!"u8.ToArray(), ct);

        Assert.That(await accepted.Stream.ReadExactlyAsync(5, ct), Is.EqualTo("hello"u8.ToArray()));
        Assert.That(await dialer.Stream.ReadExactlyAsync(6, ct), Is.EqualTo("world!"u8.ToArray()));
    }

    [Test]
    public async Task Connection_ReportsMemoryAddresses_OfBothNodes(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("alice", "bob", ct);

        Assert.Multiple(() =>
        {
            Assert.That(dialer.LocalAddress.ToString(), Is.EqualTo("/memory/alice"));
            Assert.That(dialer.RemoteAddress.ToString(), Is.EqualTo("/memory/bob"));
            Assert.That(accepted.LocalAddress.ToString(), Is.EqualTo("/memory/bob"));
            Assert.That(accepted.RemoteAddress.ToString(), Is.EqualTo("/memory/alice"));
        });
    }

    [Test]
    public async Task Dial_Succeeds_WhenAddressCarriesPeerId(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        await using var listener = await network.CreateTransport("b").ListenAsync(Multiaddress.Memory("b"), ct);
        var peer = KeyPair.FromSeed(new byte[32]).PeerId;
        var address = Multiaddress.Memory("b").WithPeerId(peer);

        var transport = network.CreateTransport("a");
        Assert.That(transport.CanDial(address), Is.True);
        await using var dialed = await transport.DialAsync(address, ct);
        await using var accepted = await listener.AcceptAsync(ct);

        Assert.That(accepted.RemoteAddress, Is.EqualTo(Multiaddress.Memory("a")));
    }

    [Test]
    public void Dial_IsRefused_WhenNothingListens()
    {
        var network = new InMemoryNetwork();
        network.CreateTransport("b");

        var ex = Assert.ThrowsAsync<TransportException>(async () =>
            await network.CreateTransport("a").DialAsync(Multiaddress.Memory("b"), CancellationToken.None));
        Assert.That(ex!.Message, Does.Contain("refused"));
    }

    [Test]
    public void Transport_CannotDialOrListen_OnNonMemoryAddresses()
    {
        var transport = new InMemoryNetwork().CreateTransport("a");
        var tcp = Multiaddress.Parse("/ip4/127.0.0.1/tcp/4001");

        Assert.Multiple(() =>
        {
            Assert.That(transport.CanDial(tcp), Is.False);
            Assert.That(transport.CanListen(tcp), Is.False);
            Assert.That(transport.CanDial(Multiaddress.Parse("/memory/x/tcp/1")), Is.False);
            Assert.ThrowsAsync<TransportException>(async () => await transport.DialAsync(tcp, CancellationToken.None));
        });
    }

    [Test]
    public void Listen_Throws_OnAnotherNodesName()
    {
        var transport = new InMemoryNetwork().CreateTransport("a");

        Assert.ThrowsAsync<TransportException>(async () => await transport.ListenAsync(Multiaddress.Memory("b"), CancellationToken.None));
    }

    [Test]
    public async Task Listen_Throws_WhenAlreadyListening(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        await using var first = await network.CreateTransport("a").ListenAsync(Multiaddress.Memory("a"), ct);

        Assert.ThrowsAsync<TransportException>(async () =>
            await network.CreateTransport("a").ListenAsync(Multiaddress.Memory("a"), CancellationToken.None));
    }

    [Test]
    public async Task Listener_Dispose_RefusesDials_AndEndsPendingAccept(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var transport = network.CreateTransport("b");
        var listener = await transport.ListenAsync(Multiaddress.Memory("b"), ct);
        var pendingAccept = listener.AcceptAsync(ct).AsTask();

        await listener.DisposeAsync();

        Assert.ThrowsAsync<ObjectDisposedException>(async () => await pendingAccept);
        Assert.ThrowsAsync<TransportException>(async () => await network.CreateTransport("a").DialAsync(Multiaddress.Memory("b"), CancellationToken.None));
        await using var again = await transport.ListenAsync(Multiaddress.Memory("b"), ct);
        Assert.That(network.IsListening("b"), Is.True);
    }

    [Test]
    public async Task Read_ReturnsEndOfStream_AfterPeerDisposesAndDataIsRead(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);

        await dialer.Stream.WriteAsync("last words"u8.ToArray(), ct);
        await dialer.DisposeAsync();

        Assert.That(System.Text.Encoding.ASCII.GetString(await accepted.Stream.ReadToEndAsync(ct)), Is.EqualTo("last words"));
        Assert.That(await accepted.Stream.ReadAsync(new byte[1], ct), Is.Zero);
    }

    [Test]
    public async Task Write_IsDropped_AfterPeerClosed(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        await accepted.DisposeAsync();

        Assert.DoesNotThrowAsync(async () => await dialer.Stream.WriteAsync(new byte[1000], ct));
        Assert.That(await dialer.Stream.ReadAsync(new byte[1], ct), Is.Zero);
    }

    [Test]
    public async Task Stream_Throws_WhenUsedAfterOwnDispose(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, _) = await network.ConnectAsync("a", "b", ct);
        await dialer.DisposeAsync();

        Assert.ThrowsAsync<ObjectDisposedException>(async () => await dialer.Stream.WriteAsync(new byte[1], ct));
        Assert.ThrowsAsync<ObjectDisposedException>(async () => await dialer.Stream.ReadSomeAsync(1, ct));
    }

    [Test]
    public async Task PendingRead_ReturnsZero_WhenOwnEndIsDisposed(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, _) = await network.ConnectAsync("a", "b", ct);
        var read = dialer.Stream.ReadSomeAsync(1, ct);

        await dialer.DisposeAsync();

        Assert.That(await read, Is.Zero);
    }

    [Test]
    public async Task Write_WaitsForReader_WhenBufferIsFull(CancellationToken ct)
    {
        var network = new InMemoryNetwork { BufferSize = 1024 };
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        await dialer.Stream.WriteAsync(new byte[1024], ct);

        var blocked = dialer.Stream.WriteAsync(new byte[10], ct).AsTask();
        Assert.That(blocked.IsCompleted, Is.False, "a writer past the buffer bound must wait");

        await accepted.Stream.ReadExactlyAsync(100, ct);
        await blocked;
        Assert.That((await accepted.Stream.ReadExactlyAsync(934, ct)).Length, Is.EqualTo(934));
    }

    [Test]
    public async Task ZeroByteRead_WaitsForData_WithoutConsumingIt(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var ready = accepted.Stream.ReadAsync(Memory<byte>.Empty, ct).AsTask();
        Assert.That(ready.IsCompleted, Is.False);

        await dialer.Stream.WriteAsync(new byte[] { 42 }, ct);

        Assert.That(await ready, Is.Zero);
        Assert.That(await accepted.Stream.ReadExactlyAsync(1, ct), Is.EqualTo(new byte[] { 42 }));
    }

    [Test]
    public async Task Transfer_CompletesBothWaysAtOnce_ThroughASmallBuffer(CancellationToken ct)
    {
        var network = new InMemoryNetwork { BufferSize = 4096 };
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var payload = new byte[256 * 1024];
        new Random(1).NextBytes(payload);

        async Task<byte[]> SendAndReceive(Stream stream)
        {
            var reading = stream.ReadExactlyAsync(payload.Length, ct);
            for (var offset = 0; offset < payload.Length; offset += 10_000)
                await stream.WriteAsync(payload.AsMemory(offset, Math.Min(10_000, payload.Length - offset)), ct);
            return await reading;
        }

        var results = await Task.WhenAll(SendAndReceive(dialer.Stream), SendAndReceive(accepted.Stream));

        Assert.That(results.All(r => r.AsSpan().SequenceEqual(payload)), Is.True);
    }

    [Test]
    public async Task SyncReadAndWrite_Work(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);

        dialer.Stream.Write([1, 2, 3], 0, 3);
        var buffer = new byte[3];
        accepted.Stream.ReadExactly(buffer);

        Assert.That(buffer, Is.EqualTo(new byte[] { 1, 2, 3 }));
    }

    [Test]
    public async Task Counters_TrackBytesWritesAndConnections(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        await dialer.Stream.WriteAsync(new byte[10], ct);
        await dialer.Stream.WriteAsync(new byte[5], ct);
        await accepted.Stream.ReadExactlyAsync(15, ct);
        var link = network.Link("a", "b");

        Assert.Multiple(() =>
        {
            Assert.That(link.BytesWritten, Is.EqualTo(15));
            Assert.That(link.Writes, Is.EqualTo(2));
            Assert.That(link.BytesRead, Is.EqualTo(15));
            Assert.That(link.ConnectionsOpened, Is.EqualTo(1));
            Assert.That(network.Link("b", "a").BytesWritten, Is.Zero);
            Assert.That(network.ConnectionCount, Is.EqualTo(1));
            Assert.That(network.ConnectionCountOf("a"), Is.EqualTo(1));
            Assert.That(network.ConnectionsOpened, Is.EqualTo(1));
        });

        await dialer.DisposeAsync();
        Assert.That(network.ConnectionCount, Is.EqualTo(1), "half-closed is still open");
        await accepted.DisposeAsync();
        Assert.Multiple(() =>
        {
            Assert.That(network.ConnectionCount, Is.Zero);
            Assert.That(network.ConnectionCountOf("b"), Is.Zero);
            Assert.That(network.ConnectionsOpened, Is.EqualTo(1));
        });
    }
}
