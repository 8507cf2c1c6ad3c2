using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Store;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.TestKit.Harness;

/// <summary>
/// What a node's discovery factory and components get: the node's host, store, discovery, clock,
/// network, seeded randomness and logger, plus the components started before them. One per start of a
/// node (a restart makes a new one).
/// </summary>
public sealed class TestNodeContext
{
    private readonly List<object> _components;
    private IDiscovery? _discovery;
    private bool _discoveryReady;

    internal TestNodeContext(TestNode node, P2PHost host, IKeyValueStore? store, List<object> components, CancellationToken stopping)
    {
        Node = node;
        Host = host;
        StoreOrNull = store;
        _components = components;
        Stopping = stopping;
        Random = node.Cluster.Simulation.CreateRandom("node", node.Name, node.Starts.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Logger = node.Cluster.LoggerFactory.CreateLogger($"P2PInference.TestKit.Harness.{node.Name}");
    }

    public TestCluster Cluster => Node.Cluster;

    public TestNode Node { get; }

    public string Name => Node.Name;

    public TestNodeSpec Spec => Node.Spec;

    public P2PHost Host { get; }

    /// <summary>The host's circuit relay transport when the cluster has NAT (<see cref="TestClusterOptions.Nat"/>), else null.</summary>
    public Facilities.Net.Protocols.Relay.CircuitRelayTransport? CircuitRelay { get; init; }

    public InMemoryNetwork Network => Cluster.Network;

    /// <summary>The simulation's clock.</summary>
    public SimulationClock Time => Cluster.Time;

    /// <summary>The node's store (the same <see cref="Store.SimulatedStore"/> across restarts unless wiped).</summary>
    /// <exception cref="InvalidOperationException">The node has no storage.</exception>
    public IKeyValueStore Store => StoreOrNull ?? throw new InvalidOperationException($"node '{Name}' has no storage (TestClusterOptions.Storage / TestNodeSpec.Storage)");

    public IKeyValueStore? StoreOrNull { get; }

    /// <summary>The node's discovery.</summary>
    /// <exception cref="InvalidOperationException">Read by the discovery factory itself (it does not exist yet), or the cluster has no discovery.</exception>
    public IDiscovery Discovery => _discoveryReady
        ? _discovery ?? throw new InvalidOperationException($"the cluster has no discovery (TestDiscoveryKind.None)")
        : throw new InvalidOperationException("the node's discovery is being created; it is not available to its own factory");

    /// <summary>Randomness for this start of this node, derived from the simulation's seed, the node's name and its start count.</summary>
    public Random Random { get; }

    public ILogger Logger { get; }

    public ILoggerFactory LoggerFactory => Cluster.LoggerFactory;

    /// <summary>Cancelled when this start of the node ends (stop or kill): for a component's background loops.</summary>
    public CancellationToken Stopping { get; }

    /// <summary>The first component started before this point on this node that is a <typeparamref name="T"/>.</summary>
    /// <exception cref="InvalidOperationException">There is none.</exception>
    public T Get<T>() where T : class =>
        TryGet<T>() ?? throw new InvalidOperationException($"node '{Name}' has no component of type {typeof(T).Name} (yet)");

    public T? TryGet<T>() where T : class
    {
        lock (_components) return _components.OfType<T>().FirstOrDefault();
    }

    internal void SetDiscovery(IDiscovery? discovery)
    {
        _discovery = discovery;
        _discoveryReady = true;
    }
}
