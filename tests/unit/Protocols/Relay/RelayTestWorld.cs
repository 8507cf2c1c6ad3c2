using System.Net;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Protocols.Relay;

/// <summary>
/// Hosts on one in-memory network with 10 ms links, for the relay and hole-punching simulations:
/// relays, peers with the circuit transport and an echo handler, NAT routers; everything stopped
/// together, last made first.
/// </summary>
internal sealed class RelayTestWorld(SimulationExecutor sim) : IAsyncDisposable
{
    public const string Echo = "/test/echo/1.0.0";

    private readonly List<IAsyncDisposable> _owned = [];

    public InMemoryNetwork Network { get; } = CreateNetwork(sim);

    public async Task<(P2PHost Host, RelayService Service)> RelayAsync(RelayServiceOptions? options = null, string name = "relay", bool inboundPeersArePublic = false)
    {
        var (host, _) = await PeerAsync(name, inboundPeersArePublic: inboundPeersArePublic);
        var service = new RelayService(host, options);
        Own(new Disposer(service.Dispose));
        return (host, service);
    }

    /// <summary>A host with the circuit transport (first, as it must be), its in-memory one and an echo handler.</summary>
    /// <param name="identity">Tells apart identities on one node; the node's name when null.</param>
    public async Task<(P2PHost Host, CircuitRelayTransport Circuit)> PeerAsync(string name, string? identity = null, bool inboundPeersArePublic = false)
    {
        var circuit = new CircuitRelayTransport();
        var options = sim.HostOptionsFor(Network, name);
        var host = Own(await sim.StartHostAsync(Network, name, options with
        {
            Identity = KeyPair.FromRandom(sim.CreateRandom("identity", identity ?? name)),
            Transports = [circuit, .. options.Transports],
            InboundPeersArePublic = inboundPeersArePublic,
        }));
        host.Handle(Echo, async (context, ct) =>
        {
            await context.Stream.CopyToOnContextAsync(context.Stream, ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
        return (host, circuit);
    }

    public NatRouter Nat(string name, NatBehavior behavior, string address, params string[] nodes) =>
        Network.AddNatRouter(name, behavior, IPAddress.Parse(address)).Add(nodes);

    /// <summary>Stops <paramref name="owned"/> before everything made earlier.</summary>
    public T Own<T>(T owned)
        where T : IAsyncDisposable
    {
        _owned.Insert(0, owned);
        return owned;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var owned in _owned) await owned.DisposeAsync();
    }

    private static InMemoryNetwork CreateNetwork(SimulationExecutor sim)
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        network.ConfigureLinks(link => link.Latency = TimeSpan.FromMilliseconds(10));
        return network;
    }

    private sealed class Disposer(Action dispose) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            dispose();
            return ValueTask.CompletedTask;
        }
    }
}
