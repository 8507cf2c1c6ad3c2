using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.TestKit.Network;

namespace P2PInference.TestKit.Simulation;

/// <summary>
/// libp2p hosts in a simulation in one line: the identity and entropy drawn from the seed by node name, the in-memory
/// network's transport and the simulation clock, so a host replays from the seed like everything else.
/// <code>
/// await using var a = await sim.StartHostAsync(network, "a");
/// await using var b = await sim.StartHostAsync(network, "b", sim.HostOptionsFor(network, "b") with { IdentifyOnConnect = false });
/// </code>
/// </summary>
public static class SimulatedHosts
{
    /// <summary>Options for node <paramref name="name"/>; a test changes what it needs with <c>with { … }</c>.</summary>
    public static HostOptions HostOptionsFor(this SimulationExecutor sim, InMemoryNetwork network, string name)
    {
        ArgumentNullException.ThrowIfNull(sim);
        ArgumentNullException.ThrowIfNull(network);
        return new HostOptions
        {
            Identity = KeyPair.FromRandom(sim.CreateRandom("identity", name)),
            RandomSource = new SeededRandomSource(sim.CreateRandom("entropy", name)),
            Transports = [network.CreateTransport(name)],
            TimeProvider = sim.Clock,
        };
    }

    /// <summary>
    /// Starts node <paramref name="name"/>'s host (<paramref name="options"/>, or <see cref="HostOptionsFor"/>'s) listening
    /// on <c>/memory/name</c>; the trace records its steps as that node's.
    /// </summary>
    public static Task<P2PHost> StartHostAsync(this SimulationExecutor sim, InMemoryNetwork network, string name, HostOptions? options = null,
        CancellationToken cancellationToken = default) =>
        SimulationExecutor.InNode(name, async () =>
        {
            var host = new P2PHost(options ?? sim.HostOptionsFor(network, name));
            try
            {
                await host.StartAsync([InMemoryNetwork.AddressOf(name)], cancellationToken);
            }
            catch
            {
                await host.DisposeAsync();
                throw;
            }
            return host;
        });
}
