using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>
/// Bulk calls (<see cref="RpcOptions.BulkMethods"/>) and limited connections: a caller whose only
/// connection to the callee goes through a relay waits <see cref="RpcOptions.DirectConnectionWait"/>
/// for a direct one before a bulk call, then goes over the relay; small calls go at once.
/// </summary>
[TestFixture]
public sealed class RpcDirectConnectionWaitTests
{
    private const string Bulk = "test.bulk";
    private const string Small = "test.small";
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(5);
    private static readonly Multiaddress CircuitSuffix = Multiaddress.Parse("/p2p-circuit");

    private sealed class World(SimulationExecutor sim) : IAsyncDisposable
    {
        private readonly List<IAsyncDisposable> _owned = [];

        public InMemoryNetwork Network { get; } = new(sim.Clock, sim.Seed);

        public async Task<P2PHost> HostAsync(string name)
        {
            var options = sim.HostOptionsFor(Network, name);
            var host = await sim.StartHostAsync(Network, name, options with { Transports = [new CircuitRelayTransport(), .. options.Transports] });
            _owned.Insert(0, host);
            return host;
        }

        public RpcNode Rpc(P2PHost host, TimeSpan? wait = null)
        {
            var rpc = new RpcNode(host, new RpcOptions
            {
                TimeProvider = sim.Clock,
                RandomSource = host.RandomSource,
                Random = sim.CreateRandom("rpc", host.PeerId.ToString()),
                BulkMethods = new HashSet<string> { Bulk },
                DirectConnectionWait = wait ?? Wait,
            });
            _owned.Insert(0, rpc);
            return rpc;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var owned in _owned) await owned.DisposeAsync();
        }
    }

    /// <summary>A caller, a callee behind a NAT listening through a relay, and the caller connected to it through the relay.</summary>
    private static async Task<(World World, RpcNode Caller, RpcNode Callee, RelayService Relay)> RelayedAsync(SimulationExecutor sim, TimeSpan? wait = null,
        Func<P2PHost, P2PHost, Task>? beforeDial = null)
    {
        var world = new World(sim);
        var relayHost = await world.HostAsync("relay");
        var relay = new RelayService(relayHost);
        var callerHost = await world.HostAsync("caller");
        var caller = world.Rpc(callerHost, wait);
        var calleeHost = await world.HostAsync("callee");
        var callee = world.Rpc(calleeHost);
        world.Network.AddNatRouter("home", NatBehavior.PortRestrictedCone, IPAddress.Parse("198.51.100.20")).Add("callee");
        await calleeHost.StartAsync([relayHost.AdvertisedAddresses[0].Encapsulate(CircuitSuffix)], CancellationToken.None);
        callee.Respond(Bulk, (request, _) => ValueTask.FromResult(request));
        callee.Respond(Small, (request, _) => ValueTask.FromResult(request));
        if (beforeDial is not null) await beforeDial(callerHost, calleeHost);
        var connection = await callerHost.ConnectAsync(CircuitAddress.For(relayHost.ListenAddresses[0], relayHost.PeerId, calleeHost.PeerId), CancellationToken.None);
        Assert.That(connection.IsLimited, Is.True, "the only connection is the relayed one");
        return (world, caller, callee, relay);
    }

    [Test]
    public void SmallCall_OverALimitedConnection_GoesAtOnce() => SimulationTest.Run(async sim =>
    {
        var (world, caller, callee, relay) = await RelayedAsync(sim);
        await using var _ = world;
        using var __ = relay;
        var started = sim.Clock.GetUtcNow();

        var answer = await caller.RequestAsync(callee.PeerId, Small, "ping"u8.ToArray(), null, CancellationToken.None);

        Assert.That(answer, Is.EqualTo("ping"u8.ToArray()));
        Assert.That(sim.Clock.GetUtcNow() - started, Is.LessThan(TimeSpan.FromSeconds(1)), "no wait for a direct connection");
    });

    [Test]
    public void BulkCall_WithOnlyALimitedConnection_WaitsTheBound_ThenGoesOverTheRelay() => SimulationTest.Run(async sim =>
    {
        var (world, caller, callee, relay) = await RelayedAsync(sim);
        await using var _ = world;
        using var __ = relay;
        var started = sim.Clock.GetUtcNow();

        var answer = await caller.RequestAsync(callee.PeerId, Bulk, "tokens"u8.ToArray(), null, CancellationToken.None);

        Assert.That(answer, Is.EqualTo("tokens"u8.ToArray()), "after the wait the call goes over the relay and succeeds");
        Assert.That(sim.Clock.GetUtcNow() - started, Is.GreaterThanOrEqualTo(Wait).And.LessThan(Wait + TimeSpan.FromSeconds(1)));
        Assert.That(relay.CircuitCount, Is.EqualTo(1));
    });

    [Test]
    public void BulkCall_WhenAHolePunchBringsADirectConnection_GoesDirect_BeforeTheBound() => SimulationTest.Run(async sim =>
    {
        var services = new List<DcutrService>();
        var (world, caller, callee, relay) = await RelayedAsync(sim, beforeDial: (a, b) =>
        {
            services.Add(new DcutrService(a));
            services.Add(new DcutrService(b));
            return Task.CompletedTask;
        });
        await using var _ = world;
        using var __ = relay;
        var started = sim.Clock.GetUtcNow();

        var answer = await caller.RequestAsync(callee.PeerId, Bulk, "tokens"u8.ToArray(), null, CancellationToken.None);

        Assert.That(answer, Is.EqualTo("tokens"u8.ToArray()));
        Assert.That(sim.Clock.GetUtcNow() - started, Is.LessThan(Wait), "the call went as soon as the direct connection came, not at the bound");
        foreach (var service in services) await service.DisposeAsync();
    });

    [Test]
    public void BulkCall_WithZeroWait_GoesOverTheRelayAtOnce() => SimulationTest.Run(async sim =>
    {
        var (world, caller, callee, relay) = await RelayedAsync(sim, TimeSpan.Zero);
        await using var _ = world;
        using var __ = relay;
        var started = sim.Clock.GetUtcNow();

        var answer = await caller.RequestAsync(callee.PeerId, Bulk, "tokens"u8.ToArray(), null, CancellationToken.None);

        Assert.That(answer, Is.EqualTo("tokens"u8.ToArray()));
        Assert.That(sim.Clock.GetUtcNow() - started, Is.LessThan(TimeSpan.FromSeconds(1)));
    });

    [Test]
    public void BulkCall_WhoseDeadlineComesFirst_FailsWithDeadlineExceeded_NotAfterTheWait() => SimulationTest.Run(async sim =>
    {
        var (world, caller, callee, relay) = await RelayedAsync(sim);
        await using var _ = world;
        using var __ = relay;
        var started = sim.Clock.GetUtcNow();

        await Assert.ThatAsync(() => caller.RequestAsync(callee.PeerId, Bulk, "tokens"u8.ToArray(), new RpcCallOptions { Timeout = TimeSpan.FromSeconds(2) }, CancellationToken.None),
            Throws.TypeOf<RpcException>().With.Property(nameof(RpcException.Code)).EqualTo(RpcStatusCode.DeadlineExceeded));
        Assert.That(sim.Clock.GetUtcNow() - started, Is.LessThan(Wait));
    });
}
