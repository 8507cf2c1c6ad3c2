using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Network;

[TestFixture]
[CancelAfter(10000)]
public sealed class InMemoryNetworkFaultTests
{
    [Test]
    public async Task PartitionFailNewDials_RefusesDials_ButKeepsOpenConnections(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);

        network.Partition("a", "b", PartitionMode.FailNewDials);

        Assert.ThrowsAsync<TransportException>(async () => await network.CreateTransport("a").DialAsync(Multiaddress.Memory("b"), CancellationToken.None));
        await dialer.Stream.WriteAsync("still here"u8.ToArray(), ct);
        Assert.That(await accepted.Stream.ReadExactlyAsync(10, ct), Is.EqualTo("still here"u8.ToArray()));
    }

    [Test]
    public async Task PartitionStall_HoldsBytes_UntilHealed(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var partition = network.Partition("a", "b", PartitionMode.Stall);

        await dialer.Stream.WriteAsync("abc"u8.ToArray(), ct);
        var read = accepted.Stream.ReadExactlyAsync(3, ct);
        Assert.That(read.IsCompleted, Is.False, "nothing crosses a stalled partition");
        Assert.ThrowsAsync<TransportException>(async () => await network.CreateTransport("a").DialAsync(Multiaddress.Memory("b"), CancellationToken.None));

        partition.Heal();

        Assert.That(await read, Is.EqualTo("abc"u8.ToArray()));
        Assert.That(partition.IsHealed, Is.True);
    }

    [Test]
    public async Task PartitionReset_AbortsOpenConnections_OnBothEnds(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var pendingRead = accepted.Stream.ReadSomeAsync(1, ct);

        network.Partition("a", "b", PartitionMode.Reset);

        Assert.ThrowsAsync<IOException>(async () => await pendingRead);
        Assert.ThrowsAsync<IOException>(async () => await dialer.Stream.WriteAsync(new byte[1], ct));
        Assert.ThrowsAsync<IOException>(async () => await dialer.Stream.ReadSomeAsync(1, ct));
        Assert.ThrowsAsync<TransportException>(async () => await network.CreateTransport("b").DialAsync(Multiaddress.Memory("a"), CancellationToken.None));
        Assert.That(network.ConnectionCount, Is.Zero);
    }

    [Test]
    public async Task PartitionOneWay_StallsOneDirection_AndLetsTheOtherThrough(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);

        network.PartitionOneWay("a", "b", PartitionMode.Stall);
        await dialer.Stream.WriteAsync("to b"u8.ToArray(), ct);
        await accepted.Stream.WriteAsync("to a"u8.ToArray(), ct);

        Assert.That(await dialer.Stream.ReadExactlyAsync(4, ct), Is.EqualTo("to a"u8.ToArray()));
        var toB = accepted.Stream.ReadExactlyAsync(4, ct);
        Assert.That(toB.IsCompleted, Is.False);
        Assert.That(network.Link("a", "b").Partition, Is.EqualTo(PartitionMode.Stall));
        Assert.That(network.Link("b", "a").Partition, Is.Null);

        network.Heal();
        Assert.That(await toB, Is.EqualTo("to b"u8.ToArray()));
    }

    [Test]
    public async Task PartitionGroups_CutEveryPairAcross_ButNotWithinAGroup(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        foreach (var name in new[] { "a1", "a2", "b1", "b2" })
            await network.CreateTransport(name).ListenAsync(Multiaddress.Memory(name), ct);

        network.Partition(["a1", "a2"], ["b1", "b2"], PartitionMode.FailNewDials);

        foreach (var (from, to) in new[] { ("a1", "b1"), ("a2", "b2"), ("b1", "a2"), ("b2", "a1") })
            Assert.ThrowsAsync<TransportException>(async () => await network.CreateTransport(from).DialAsync(Multiaddress.Memory(to), CancellationToken.None), $"{from}->{to}");
        await using var within = await network.CreateTransport("a1").DialAsync(Multiaddress.Memory("a2"), ct);

        network.Heal();
        await using var across = await network.CreateTransport("a1").DialAsync(Multiaddress.Memory("b1"), ct);
    }

    [Test]
    public async Task HoldThenRelease_DeliversEverything_InOrder(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        await dialer.Stream.WriteAsync(new byte[] { 1 }, ct); // before the hold: already delivered
        var link = network.Link("a", "b");

        link.Hold();
        for (byte i = 2; i <= 50; i++) await dialer.Stream.WriteAsync(new[] { i }, ct);
        Assert.That(await accepted.Stream.ReadExactlyAsync(1, ct), Is.EqualTo(new byte[] { 1 }));
        var rest = accepted.Stream.ReadExactlyAsync(49, ct);
        Assert.That(rest.IsCompleted, Is.False, "held bytes are not delivered");
        Assert.That(link.IsHeld, Is.True);

        link.Release();

        Assert.That(await rest, Is.EqualTo(Enumerable.Range(2, 49).Select(i => (byte)i).ToArray()));
    }

    [Test]
    public async Task HoldThenRelease_DeliversEndOfStream_AfterTheData(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        network.Link("a", "b").Hold();
        await dialer.Stream.WriteAsync("bye"u8.ToArray(), ct);
        await dialer.DisposeAsync();
        var all = accepted.Stream.ReadToEndAsync(ct);
        Assert.That(all.IsCompleted, Is.False);

        network.Link("a", "b").Release();

        Assert.That(await all, Is.EqualTo("bye"u8.ToArray()));
    }

    [Test]
    public async Task ResetConnections_MakesBothEndsThrow_AndLaterDialsWork(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        await dialer.Stream.WriteAsync(new byte[10], ct);

        var count = network.Link("a", "b").ResetConnections();

        Assert.That(count, Is.EqualTo(1));
        Assert.ThrowsAsync<IOException>(async () => await accepted.Stream.ReadSomeAsync(10, ct), "unread bytes are lost in a reset");
        Assert.ThrowsAsync<IOException>(async () => await dialer.Stream.WriteAsync(new byte[1], ct));
        Assert.ThrowsAsync<IOException>(async () => await accepted.Stream.WriteAsync(new byte[1], ct));
        await using var again = await network.CreateTransport("a").DialAsync(Multiaddress.Memory("b"), ct);
    }

    [Test]
    public async Task Slicing_SplitsReads_AndPreservesContent(CancellationToken ct)
    {
        var random = TestSeed.CreateRandom();
        var network = new InMemoryNetwork(seed: random.Next());
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        network.Link("a", "b").MaxSliceSize = 7;
        var payload = new byte[5000];
        random.NextBytes(payload);

        await dialer.Stream.WriteAsync(payload, ct);
        await dialer.DisposeAsync();
        var received = new List<byte>();
        var sizes = await accepted.Stream.ReadSizesToEndAsync(received, ct);

        Assert.Multiple(() =>
        {
            Assert.That(received, Is.EqualTo(payload));
            Assert.That(sizes, Has.All.InRange(1, 7));
            Assert.That(sizes.Distinct().Count(), Is.GreaterThan(1), "slice sizes vary");
        });
    }

    [Test]
    public async Task Slicing_TransfersOneMebibyteIntact_WithConcurrentReader(CancellationToken ct)
    {
        var random = TestSeed.CreateRandom();
        var network = new InMemoryNetwork(seed: random.Next());
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        network.Link("a", "b").MaxSliceSize = 1500;
        var payload = new byte[1 << 20];
        random.NextBytes(payload);

        var reader = accepted.Stream.ReadToEndAsync(ct);
        for (var offset = 0; offset < payload.Length; offset += 100_000)
            await dialer.Stream.WriteAsync(payload.AsMemory(offset, Math.Min(100_000, payload.Length - offset)), ct);
        await dialer.DisposeAsync();

        var received = await reader;
        Assert.That(received, Has.Length.EqualTo(payload.Length));
        // SequenceEqual rather than Is.EqualTo: NUnit compares a MiB element by element far too slowly.
        Assert.That(received.AsSpan().SequenceEqual(payload), Is.True, "content must arrive intact");
    }

    [Test]
    public async Task Corruption_ChangesBytes_TheSameWayForTheSameSeed(CancellationToken ct)
    {
        var seed = TestSeed.Choose();
        var payload = Enumerable.Range(0, 4000).Select(i => (byte)i).ToArray();

        var first = await SendThroughCorruptionAsync(seed, payload, ct);
        var second = await SendThroughCorruptionAsync(seed, payload, ct);

        Assert.Multiple(() =>
        {
            Assert.That(first, Has.Length.EqualTo(payload.Length));
            Assert.That(first, Is.Not.EqualTo(payload), "1% of 4000 bytes: some must be flipped");
            Assert.That(second, Is.EqualTo(first), "same seed, same corruption");
        });
    }

    private static async Task<byte[]> SendThroughCorruptionAsync(int seed, byte[] payload, CancellationToken ct)
    {
        var network = new InMemoryNetwork(seed: seed);
        network.Link("a", "b").CorruptionProbability = 0.01;
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        await dialer.Stream.WriteAsync(payload, ct);
        await dialer.DisposeAsync();
        return await accepted.Stream.ReadToEndAsync(ct);
    }

    [Test]
    public async Task CorruptByteAt_FlipsOneBit_AtThatOffsetOnly(CancellationToken ct)
    {
        var network = new InMemoryNetwork(seed: TestSeed.Choose());
        network.Link("a", "b").CorruptByteAt = 1234;
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var payload = new byte[3000];

        await dialer.Stream.WriteAsync(payload.AsMemory(0, 1000), ct);
        await dialer.Stream.WriteAsync(payload.AsMemory(1000), ct);
        var received = await accepted.Stream.ReadExactlyAsync(3000, ct);

        var differing = Enumerable.Range(0, 3000).Where(i => received[i] != payload[i]).ToArray();
        Assert.That(differing, Is.EqualTo(new[] { 1234 }));
        Assert.That(System.Numerics.BitOperations.PopCount(received[1234]), Is.EqualTo(1));
    }

    [Test]
    public async Task ResetAfterBytes_DeliversTheLimit_ThenResetsTheConnection(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        network.Link("a", "b").ResetAfterBytes = 100;
        await using var listener = await network.CreateTransport("b").ListenAsync(Multiaddress.Memory("b"), ct);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", listener, ct);

        await dialer.Stream.WriteAsync(new byte[60], ct);
        Assert.ThrowsAsync<IOException>(async () => await dialer.Stream.WriteAsync(new byte[60], ct));

        Assert.That((await accepted.Stream.ReadExactlyAsync(100, ct)).Length, Is.EqualTo(100));
        Assert.ThrowsAsync<IOException>(async () => await accepted.Stream.ReadSomeAsync(1, ct));
        Assert.ThrowsAsync<IOException>(async () => await accepted.Stream.WriteAsync(new byte[1], ct));
        Assert.That(network.ConnectionCount, Is.Zero);

        var (again, againAccepted) = await network.ConnectAsync("a", "b", listener, ct);
        await again.Stream.WriteAsync(new byte[50], ct);
        Assert.That((await againAccepted.Stream.ReadExactlyAsync(50, ct)).Length, Is.EqualTo(50), "each connection gets its own budget");
    }

    [Test]
    public async Task Crash_ResetsConnections_AndRefusesDials_UntilTheNodeListensAgain(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var transportB = network.CreateTransport("b");
        var listener = await transportB.ListenAsync(Multiaddress.Memory("b"), ct);
        var (dialer, _) = await network.ConnectAsync("a", "b", listener, ct);
        var pendingRead = dialer.Stream.ReadSomeAsync(1, ct);
        var pendingAccept = listener.AcceptAsync(ct).AsTask();

        network.Crash("b");

        Assert.ThrowsAsync<IOException>(async () => await pendingRead);
        Assert.ThrowsAsync<IOException>(async () => await dialer.Stream.WriteAsync(new byte[1], ct));
        Assert.ThrowsAsync<ObjectDisposedException>(async () => await pendingAccept);
        Assert.ThrowsAsync<TransportException>(async () => await network.CreateTransport("a").DialAsync(Multiaddress.Memory("b"), CancellationToken.None));
        Assert.That(network.IsListening("b"), Is.False);

        var restarted = await network.CreateTransport("b").ListenAsync(Multiaddress.Memory("b"), ct);
        var (again, againAccepted) = await network.ConnectAsync("a", "b", restarted, ct);
        await again.Stream.WriteAsync("hi"u8.ToArray(), ct);
        Assert.That(await againAccepted.Stream.ReadExactlyAsync(2, ct), Is.EqualTo("hi"u8.ToArray()));
    }

    [Test]
    public async Task Stop_ClosesConnectionsCleanly_RemoteReadsDataThenEndOfStream(CancellationToken ct)
    {
        var network = new InMemoryNetwork();
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        await accepted.Stream.WriteAsync("goodbye"u8.ToArray(), ct);

        network.Stop("b");

        Assert.That(await dialer.Stream.ReadToEndAsync(ct), Is.EqualTo("goodbye"u8.ToArray()));
        Assert.DoesNotThrowAsync(async () => await dialer.Stream.WriteAsync(new byte[1], ct));
        Assert.That(await accepted.Stream.ReadSomeAsync(1, ct), Is.Zero, "the stopped node's own end reads end of stream");
        Assert.ThrowsAsync<TransportException>(async () => await network.CreateTransport("a").DialAsync(Multiaddress.Memory("b"), CancellationToken.None));
    }

    [Test]
    public async Task ClearFaults_RestoresTheFastPath_AfterInFlightBytesDrain(CancellationToken ct)
    {
        var network = new InMemoryNetwork(seed: 7);
        var (dialer, accepted) = await network.ConnectAsync("a", "b", ct);
        var link = network.Link("a", "b");
        link.MaxSliceSize = 2;
        link.Hold();
        await dialer.Stream.WriteAsync("held"u8.ToArray(), ct);

        link.ClearFaults();
        await dialer.Stream.WriteAsync("fast"u8.ToArray(), ct);

        Assert.That(await accepted.Stream.ReadExactlyAsync(8, ct), Is.EqualTo("heldfast"u8.ToArray()));
    }

    [Test]
    public async Task ConfigureLinks_AppliesToExistingAndNewLinks()
    {
        var network = new InMemoryNetwork();
        var existing = network.Link("a", "b");

        network.ConfigureLinks(l => l.MaxSliceSize = 3);

        Assert.That(existing.MaxSliceSize, Is.EqualTo(3));
        Assert.That(network.Link("x", "y").MaxSliceSize, Is.EqualTo(3));
        await Task.CompletedTask;
    }
}
