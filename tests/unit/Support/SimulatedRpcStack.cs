using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Support;

/// <summary>
/// Real hosts (Noise, Yamux) and real <see cref="RpcNode"/>s on one in-memory network, inside a
/// simulation: identities, randomness and time come from <paramref name="sim"/>. Every node knows the
/// addresses of the ones started before it, and they its. Disposing stops every node and host.
/// </summary>
internal sealed class SimulatedRpcStack(SimulationExecutor sim) : IAsyncDisposable
{
    private readonly List<(P2PHost Host, RpcNode Rpc)> _nodes = [];

    public InMemoryNetwork Network { get; } = new(sim.Clock, sim.Seed);

    public async Task<(P2PHost Host, RpcNode Rpc)> NodeAsync(string name, CancellationToken ct, bool inboundPeersArePublic = false)
    {
        var host = await sim.StartHostAsync(Network, name, sim.HostOptionsFor(Network, name) with { InboundPeersArePublic = inboundPeersArePublic }, ct);
        var rpc = new RpcNode(host);
        foreach (var (other, _) in _nodes)
        {
            other.PeerStore.AddAddresses(host.PeerId, host.AdvertisedAddresses);
            host.PeerStore.AddAddresses(other.PeerId, other.AdvertisedAddresses);
        }
        _nodes.Add((host, rpc));
        return (host, rpc);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (host, rpc) in Enumerable.Reverse(_nodes))
        {
            await rpc.DisposeAsync();
            await host.DisposeAsync();
        }
        _nodes.Clear();
    }
}
