using System.Globalization;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Client;

namespace P2PInference.Tests.Unit.Client;

/// <summary>A simulation with a <see cref="FakeGateway"/> announced on the mock DHT, and SDK clients of it; disposes all of it at the end.</summary>
internal sealed class GatewaySimulation
{
    private readonly List<IAsyncDisposable> _owned = [];

    private GatewaySimulation(SimulationExecutor sim, InMemoryRpcNetwork network, MockDhtRegistry registry, FakeGateway gateway)
    {
        Sim = sim;
        Network = network;
        Registry = registry;
        Gateway = gateway;
    }

    public SimulationExecutor Sim { get; }

    public InMemoryRpcNetwork Network { get; }

    public MockDhtRegistry Registry { get; }

    public FakeGateway Gateway { get; }

    public static void Run(Func<GatewaySimulation, Task> body) => SimulationTest.Run(async sim =>
    {
        var network = new InMemoryRpcNetwork(sim.Clock);
        var registry = new MockDhtRegistry(sim.Clock, sim.Seed);
        var gateway = new FakeGateway(network, registry, "gw");
        await gateway.AnnounceAsync();
        var scope = new GatewaySimulation(sim, network, registry, gateway);
        try
        {
            await body(scope);
        }
        finally
        {
            foreach (var owned in Enumerable.Reverse(scope._owned)) await owned.DisposeAsync();
            await gateway.DisposeAsync();
        }
    });

    public P2PInferenceClient Client(ClientOptions? options = null)
    {
        var peer = KeyPair.FromRandom(Sim.CreateRandom("client identity", _owned.Count.ToString(CultureInfo.InvariantCulture))).PeerId;
        var dht = Registry.CreateNode(peer, []);
        var node = Network.CreateNode(peer, discovery: dht);
        var client = new P2PInferenceClient(node, (options ?? new ClientOptions { ApiKey = FakeGateway.ApiKey }) with
        {
            ClusterId = options?.ClusterId ?? FakeGateway.Cluster.Id,
            TimeProvider = Sim.Clock,
            Random = Sim.CreateRandom("client", _owned.Count.ToString(CultureInfo.InvariantCulture)),
        });
        _owned.Add(dht);
        _owned.Add(node);
        _owned.Add(client);
        return client;
    }
}
