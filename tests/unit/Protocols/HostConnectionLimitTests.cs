using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// Inbound connection caps: per address, the slots kept for new addresses and for trusted peers, per
/// peer. Each flood comes from raw dials that never start a handshake (the cheapest attack) or from
/// peers that complete it; a healthy peer connects and pings afterwards.
/// </summary>
[TestFixture]
public sealed class HostConnectionLimitTests
{
    private SimulationExecutor _sim = null!;
    private InMemoryNetwork _network = null!;
    private readonly List<P2PHost> _hosts = [];
    private readonly List<RawConnection> _raw = [];

    private void Run(Func<Task> test) => SimulationTest.Run(async sim =>
    {
        _sim = sim;
        _hosts.Clear();
        _raw.Clear();
        _network = new InMemoryNetwork(sim.Clock, sim.Seed);
        try
        {
            await test();
        }
        finally
        {
            foreach (var raw in _raw) await raw.DisposeAsync();
            foreach (var host in _hosts) await host.DisposeAsync();
        }
    });

    private async Task<P2PHost> StartAsync(string name, int maxInbound = 4096, int perAddress = 32, int reserved = 256, int perPeer = 4,
        int trustedReserve = 256, KeyPair? identity = null)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = identity ?? KeyPair.FromRandom(_sim.CreateRandom("identity", name)),
            RandomSource = new SeededRandomSource(_sim.CreateRandom("entropy", name)),
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _sim.Clock,
            MaxInboundConnections = maxInbound,
            MaxInboundConnectionsPerAddress = perAddress,
            InboundConnectionsReservedForNewAddresses = reserved,
            MaxConnectionsPerPeer = perPeer,
            InboundConnectionsReservedForTrustedPeers = trustedReserve,
        });
        _hosts.Add(host);
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], CancellationToken.None);
        return host;
    }

    /// <summary>Dials <paramref name="count"/> raw connections from <paramref name="from"/>; returns how many the server closed at once.</summary>
    private async Task<int> FloodAsync(string from, int count)
    {
        var transport = _network.CreateTransport(from);
        var reads = new List<Task<int>>();
        for (var i = 0; i < count; i++)
        {
            var raw = await transport.DialAsync(InMemoryNetwork.AddressOf("server"), CancellationToken.None);
            _raw.Add(raw);
            reads.Add(raw.Stream.ReadAsync(new byte[1], CancellationToken.None).AsTask());
        }
        await _sim.Clock.RunUntilIdleAsync();
        // A refused connection is closed before the server writes a byte; an admitted one waits for our multistream header.
        return reads.Count(r => r.IsCompletedSuccessfully && r.Result == 0 || r.IsFaulted);
    }

    private async Task AssertHealthyPeerIsServedAsync(P2PHost server)
    {
        var healthy = await StartAsync("healthy");
        await healthy.ConnectAsync(server.AdvertisedAddresses[0], CancellationToken.None);
        Assert.That(await healthy.PingAsync(server.PeerId, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    }

    [Test]
    public void FloodFromOneAddress_IsCutAtThePerAddressCap_AndAHealthyPeerConnects() => Run(async () =>
    {
        var server = await StartAsync("server", perAddress: 4);

        Assert.That(await FloodAsync("flooder", 10), Is.EqualTo(6));

        await AssertHealthyPeerIsServedAsync(server);
    });

    [Test]
    public void FloodFromFewAddresses_LeavesTheReservedSlotsToNewAddresses() => Run(async () =>
    {
        // 12 slots, 3 of them for addresses with none yet; each flooder may hold up to 100.
        var server = await StartAsync("server", maxInbound: 12, perAddress: 100, reserved: 3);

        Assert.That(await FloodAsync("flooder-1", 10), Is.EqualTo(1), "the first address gets 9 slots");
        Assert.That(await FloodAsync("flooder-2", 10), Is.EqualTo(9), "a new address gets one reserved slot, no more");

        await AssertHealthyPeerIsServedAsync(server);
    });

    [Test]
    public void SlotsFreeAgain_WhenTheFloodersConnectionsClose() => Run(async () =>
    {
        var server = await StartAsync("server", perAddress: 2);
        Assert.That(await FloodAsync("flooder", 3), Is.EqualTo(1));

        foreach (var raw in _raw) await raw.DisposeAsync();
        _raw.Clear();
        await _sim.Clock.RunUntilIdleAsync();

        Assert.That(await FloodAsync("flooder", 2), Is.Zero, "closed connections gave their slots back");
        await AssertHealthyPeerIsServedAsync(server);
    });

    /// <summary>Connects <paramref name="count"/> peers that complete the handshake; returns them.</summary>
    private async Task<List<P2PHost>> ConnectPeersAsync(string prefix, int count, P2PHost server)
    {
        var peers = new List<P2PHost>();
        for (var i = 0; i < count; i++)
        {
            var peer = await StartAsync($"{prefix}-{i}");
            await peer.ConnectAsync(server.AdvertisedAddresses[0], CancellationToken.None);
            peers.Add(peer);
        }
        await _sim.Clock.RunUntilIdleAsync();
        return peers;
    }

    private static bool ConnectedTo(P2PHost peer, P2PHost server) => peer.GetConnection(server.PeerId) is not null;

    [Test]
    public void SlotsKeptForTrustedPeers_GoOnlyToPeersTheCheckAccepts() => Run(async () =>
    {
        // 8 slots, the last 2 kept for trusted peers; no reserve for new addresses, to see this one alone.
        var server = await StartAsync("server", maxInbound: 8, reserved: 0, trustedReserve: 2);
        var trusted = new HashSet<PeerId>();
        var asked = new List<PeerId>();
        server.KeepInboundCapacityFor((peer, _) =>
        {
            asked.Add(peer);
            return ValueTask.FromResult(trusted.Contains(peer));
        });

        var plain = await ConnectPeersAsync("plain", 6, server);
        Assert.That(plain.All(p => ConnectedTo(p, server)), Is.True, "the open slots take anyone");
        Assert.That(asked, Is.Empty, "peers in the open slots are not asked");

        var intruder = (await ConnectPeersAsync("intruder", 1, server))[0];
        Assert.That(ConnectedTo(intruder, server), Is.False, "an untrusted peer in a kept slot is closed");

        var granted = await StartAsync("granted");
        trusted.Add(granted.PeerId);
        await granted.ConnectAsync(server.AdvertisedAddresses[0], CancellationToken.None);
        Assert.That(await granted.PingAsync(server.PeerId, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        await _sim.Clock.RunUntilIdleAsync();
        Assert.That(ConnectedTo(granted, server), Is.True, "a trusted peer keeps its kept slot");
        Assert.That(asked, Is.EqualTo(new[] { intruder.PeerId, granted.PeerId }));
        Assert.That(plain.All(p => ConnectedTo(p, server)), Is.True, "nobody else lost a connection");
    });

    [Test]
    public void APeerTheCheckCannotJudgeInTime_LosesItsKeptSlot() => Run(async () =>
    {
        var server = await StartAsync("server", maxInbound: 4, reserved: 0, trustedReserve: 1);
        server.KeepInboundCapacityFor(async (_, ct) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, _sim.Clock, ct);
            return true;
        });
        await ConnectPeersAsync("plain", 3, server);

        var slow = (await ConnectPeersAsync("slow", 1, server))[0];
        Assert.That(ConnectedTo(slow, server), Is.True, "it is being judged");
        await _sim.Clock.AdvanceAsync(HostOptions.DefaultIdentifyTimeout);

        Assert.That(ConnectedTo(slow, server), Is.False, "the check had until the identify timeout");
    });

    [Test]
    public void WithoutACheck_NoSlotsAreKeptBack() => Run(async () =>
    {
        var server = await StartAsync("server", maxInbound: 4, reserved: 0, trustedReserve: 1);

        var peers = await ConnectPeersAsync("plain", 4, server);

        Assert.That(peers.All(p => ConnectedTo(p, server)), Is.True);
    });

    [Test]
    public void APeerThatDialsTwice_KeepsBothConnections_WhileOurOwnRacingDialsLeaveOne() => Run(async () =>
    {
        // js-libp2p may dial a peer's addresses in parallel; closing its second connection at once would
        // fail the upgrade it is still finishing on its side.
        var server = await StartAsync("server");
        var key = KeyPair.FromRandom(_sim.CreateRandom("identity", "twice"));
        var first = await StartAsync("twice-1", identity: key);
        var second = await StartAsync("twice-2", identity: key);
        await first.ConnectAsync(server.AdvertisedAddresses[0], CancellationToken.None);
        await second.ConnectAsync(server.AdvertisedAddresses[0], CancellationToken.None);
        await _sim.Clock.RunUntilIdleAsync();

        Assert.That(server.Connections.Count(c => c.RemotePeer == key.PeerId && !c.IsClosed), Is.EqualTo(2));
        Assert.That(await first.PingAsync(server.PeerId, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(await second.PingAsync(server.PeerId, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    });
}
