using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Net.Host;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Network;

namespace P2PInference.TestKit.Harness;

/// <summary>
/// How a <see cref="TestCluster"/> is built. Every property has a default: <c>new TestClusterOptions()</c> is three plain nodes.
/// The seed, the start time and how long the run may last are the simulation's
/// (<see cref="Simulation.SimulationTest.Options(int?)"/>), not the cluster's.
/// </summary>
public sealed class TestClusterOptions
{
    /// <summary>How many nodes, named <c>node-0</c>, <c>node-1</c>…, without roles; 3 by default. Ignored when <see cref="NodeSpecs"/> is not empty.</summary>
    public int Nodes
    {
        get;
        init => field = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value));
    } = 3;

    /// <summary>Named nodes with roles; when not empty, these are the nodes (and <see cref="Nodes"/> is ignored).</summary>
    public IReadOnlyList<TestNodeSpec> NodeSpecs { get; init; } = [];

    /// <summary>Latency of every link, in each direction; zero by default.</summary>
    public TimeSpan LinkLatency { get; init; }

    /// <summary>Jitter of every link (± around <see cref="LinkLatency"/>); zero by default.</summary>
    public TimeSpan LinkJitter { get; init; }

    /// <summary>Any other link condition applied to every link, existing and future (bandwidth, slicing…).</summary>
    public Action<InMemoryLink>? ConfigureLinks { get; init; }

    /// <summary>The discovery each node gets; the mock DHT by default. <see cref="DiscoveryFactory"/> set means <see cref="TestDiscoveryKind.Custom"/>.</summary>
    public TestDiscoveryKind Discovery { get; init; } = TestDiscoveryKind.MockDht;

    /// <summary>Tunes the cluster's <see cref="MockDhtRegistry"/> (TTL, delays, missing records…) before any node starts.</summary>
    public Action<MockDhtRegistry>? ConfigureMockDht { get; init; }

    /// <summary>
    /// Builds a node's discovery for <see cref="TestDiscoveryKind.Custom"/>, after its host has started (for
    /// the Kademlia DHT: <c>new KademliaDht(context.Host, …)</c> with bootstrap peers from
    /// <see cref="TestNodeContext.Cluster"/>, then start it). A graceful stop disposes it
    /// (<see cref="IAsyncDisposable"/>); a kill disposes it after the network has cut the node off, so no
    /// goodbye gets out.
    /// </summary>
    public Func<TestNodeContext, CancellationToken, Task<IDiscovery>>? DiscoveryFactory { get; init; }

    /// <summary>Whether each node waits for <see cref="IDiscovery.WaitUntilJoinedAsync"/> before it is ready; true by default.</summary>
    public bool WaitForDiscoveryJoin { get; init; } = true;

    /// <summary>Whether nodes get a <see cref="Store.SimulatedStore"/> (per node overridable by <see cref="TestNodeSpec.Storage"/>); true by default.</summary>
    public bool Storage { get; init; } = true;

    /// <summary>What runs on the nodes beyond host, store and discovery: RPC servers, workers… Started in order.</summary>
    public IReadOnlyList<TestNodeComponent> Components { get; init; } = [];

    /// <summary>
    /// Adjusts a node's host options (timeouts, Yamux, identify…). Gets the harness's options (identity,
    /// in-memory transport, simulation clock, seeded random source, logger) and returns the ones to use; keep those five:
    /// <c>ConfigureHost = (_, options) => options with { IdleConnectionTimeout = TimeSpan.FromSeconds(5) }</c>.
    /// </summary>
    public Func<TestNodeSpec, HostOptions, HostOptions>? ConfigureHost { get; init; }

    /// <summary>Puts nodes behind NAT routers and adds a relay node (see <see cref="TestNatOptions"/>); null (the default): every node is public.</summary>
    public TestNatOptions? Nat { get; init; }

    /// <summary>Whether <see cref="TestCluster.StartAsync"/> also connects every node to every other; false by default.</summary>
    public bool ConnectAll { get; init; }

    /// <summary>Bounds, in virtual time, the harness's own waits (startup, connecting); 1 minute by default.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Where hosts, components and the harness log; nothing by default.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    internal IReadOnlyList<TestNodeSpec> ResolveNodes()
    {
        var specs = NodeSpecs.Count > 0
            ? NodeSpecs
            : Enumerable.Range(0, Nodes).Select(i => new TestNodeSpec($"node-{i}")).ToArray();
        if (Nat?.RelayNode is { } relay && specs.All(s => s.Name != relay))
            specs = [.. specs, new TestNodeSpec(relay, "relay") { Storage = false }];
        var duplicate = specs.GroupBy(s => s.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"two nodes are named '{duplicate.Key}'", nameof(NodeSpecs));
        return specs;
    }

    internal TestDiscoveryKind ResolveDiscovery()
    {
        if (DiscoveryFactory is not null) return TestDiscoveryKind.Custom;
        if (Discovery == TestDiscoveryKind.Custom)
            throw new ArgumentException("TestDiscoveryKind.Custom needs a DiscoveryFactory", nameof(DiscoveryFactory));
        return Discovery;
    }
}
