using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// Inbound connection caps: per address, the slots kept for new addresses, per peer. Each flood comes
/// from raw dials that never start a handshake (the cheapest attack); a healthy peer connects and
/// pings afterwards.
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

    private async Task<P2PHost> StartAsync(string name, int maxInbound = 4096, int perAddress = 32, int reserved = 256, int perPeer = 4)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.FromRandom(_sim.CreateRandom("identity", name)),
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _sim.Clock,
            MaxInboundConnections = maxInbound,
            MaxInboundConnectionsPerAddress = perAddress,
            InboundConnectionsReservedForNewAddresses = reserved,
            MaxConnectionsPerPeer = perPeer,
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
}
