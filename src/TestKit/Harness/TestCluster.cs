using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Threading;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.TestKit.Harness;

/// <summary>
/// A cluster of nodes for one test, in one line of setup inside the test's simulation:
/// <code>[Test] public void Name() => SimulationTest.Run(async sim =>
/// {
///     await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 5 }, CancellationToken.None);
///     ...
/// });</code>
/// Each node is a real <see cref="Facilities.Net.Host.P2PHost"/> (Noise, Yamux, identify, ping) on one
/// <see cref="InMemoryNetwork"/>, with a <see cref="Store.SimulatedStore"/>, a discovery (the mock DHT by default)
/// and whatever <see cref="TestClusterOptions.Components"/> add. It runs inside a simulation
/// (<see cref="SimulationTest.Run(Func{SimulationExecutor, Task}, SimulationOptions?)"/>): every node's
/// work runs on the executor's thread, on its <see cref="SimulationClock"/>, and derives its randomness
/// from the simulation's seed, so the seed replays the run step for step (as far as the stores' real I/O,
/// which runs outside the simulation, lets it: clusters without storage replay exactly).
/// </summary>
/// <remarks>
/// <para>Faults: <see cref="KillAsync"/> (crash, no goodbye; the store restarts from what was durable),
/// <see cref="StopAsync"/> (graceful), <see cref="RestartAsync(string, bool, CancellationToken)"/>,
/// <see cref="PartitionAsync(string, string, PartitionMode, bool, CancellationToken)"/> and
/// <see cref="HealAsync"/>; per-link conditions through <see cref="Network"/>.</para>
/// <para>Waiting: virtual time moves by itself whenever nothing is runnable, so awaiting an operation that
/// waits on timers just works; <see cref="WaitUntilAsync(Func{bool}, TimeSpan, CancellationToken, string?)"/>
/// checks a condition at each idle point and fails with a <see cref="TimeoutException"/> naming the
/// condition, the seed and the replay command.</para>
/// <para>Disposing stops every node gracefully and deletes the stores; afterwards no connection is left
/// open on the network.</para>
/// </remarks>
public sealed class TestCluster : IAsyncDisposable
{
    private readonly List<TestNode> _nodes = [];
    private readonly Dictionary<string, TestNode> _byName = new(StringComparer.Ordinal);
    private readonly ILogger _logger;
    private int _disposed;
    private int _grantsIssued;

    private TestCluster(TestClusterOptions options, SimulationExecutor simulation)
    {
        Options = options;
        Simulation = simulation;
        var seed = simulation.Seed;
        LoggerFactory = options.LoggerFactory ?? NullLoggerFactory.Instance;
        _logger = LoggerFactory.CreateLogger<TestCluster>();
        Network = new InMemoryNetwork(Time, SeedDerivation.Int(seed, "network"));
        if (options.LinkLatency > TimeSpan.Zero || options.LinkJitter > TimeSpan.Zero)
        {
            Network.ConfigureLinks(link =>
            {
                link.Latency = options.LinkLatency;
                link.Jitter = options.LinkJitter;
            });
        }
        if (options.ConfigureLinks is not null) Network.ConfigureLinks(options.ConfigureLinks);
        DiscoveryKind = options.ResolveDiscovery();
        if (DiscoveryKind == TestDiscoveryKind.MockDht)
        {
            MockDht = new MockDhtRegistry(Time, SeedDerivation.Int(seed, "mock-dht"));
            options.ConfigureMockDht?.Invoke(MockDht);
        }
        Data = new TestDataFactory(SeedDerivation.Int(seed, "data"));
        ClusterKey = new ClusterKey(KeyPair.FromSeed(SeedDerivation.Bytes(seed, "cluster key")));
    }

    /// <summary>
    /// The cluster's operator key, from the seed: <see cref="TestNode.Grant"/> of every node with a worker
    /// role (auth, gateway, processor) is signed by it, and clients trust <see cref="ClusterId"/>.
    /// </summary>
    public ClusterKey ClusterKey { get; }

    public ClusterId ClusterId => ClusterKey.Id;

    /// <summary>
    /// A grant of this cluster (or of <paramref name="signer"/>) for <paramref name="peer"/>: valid from a day
    /// before now for a year unless given, with a serial derived from the seed, the peer and the role.
    /// Tests make expired, future, other-role or other-cluster grants with it.
    /// </summary>
    public RoleGrant IssueGrant(PeerId peer, GrantRole role, DateTimeOffset? notBefore = null, DateTimeOffset? expiry = null, ClusterKey? signer = null)
    {
        ArgumentNullException.ThrowIfNull(peer);
        var now = Time.GetUtcNow();
        var serial = BitConverter.ToUInt64(SeedDerivation.Bytes(Seed, "grant serial", peer.ToString(), role.Name(), (_grantsIssued++).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        return (signer ?? ClusterKey).Issue(peer, role, notBefore ?? now - TimeSpan.FromDays(1), expiry ?? now + TimeSpan.FromDays(365), serial);
    }

    public TestClusterOptions Options { get; }

    /// <summary>The simulation the cluster runs in.</summary>
    public SimulationExecutor Simulation { get; }

    /// <summary>The simulation's seed, which everything derives from; <c>P2P_TEST_SEED=&lt;Seed&gt;</c> replays the run.</summary>
    public int Seed => Simulation.Seed;

    /// <summary>The simulation's clock: every host, link, store and mock DHT runs on it.</summary>
    public SimulationClock Time => Simulation.Clock;

    public InMemoryNetwork Network { get; }

    public TestDiscoveryKind DiscoveryKind { get; }

    /// <summary>The shared mock DHT when <see cref="DiscoveryKind"/> is <see cref="TestDiscoveryKind.MockDht"/>, else null.</summary>
    public MockDhtRegistry? MockDht { get; }

    /// <summary>Test data seeded from the cluster's seed.</summary>
    public TestDataFactory Data { get; }

    public ILoggerFactory LoggerFactory { get; }

    public IReadOnlyList<TestNode> Nodes
    {
        get
        {
            lock (_nodes) return _nodes.ToArray();
        }
    }

    public IReadOnlyList<TestNode> RunningNodes => Nodes.Where(n => n.IsRunning).ToArray();

    /// <exception cref="KeyNotFoundException">No node has that name.</exception>
    public TestNode this[string name] => Node(name);

    public TestNode this[int index] => Nodes[index];

    /// <summary>Builds the cluster in the running simulation and starts every node; returns once all are ready.</summary>
    /// <exception cref="InvalidOperationException">Called outside a simulation.</exception>
    public static async Task<TestCluster> StartAsync(TestClusterOptions? options, CancellationToken cancellationToken)
    {
        var simulation = SimulationExecutor.Current ?? throw new InvalidOperationException(
            "a TestCluster runs inside a simulation, on its clock and its seed: wrap the test in SimulationTest.Run(async sim => { ... })");
        options ??= new TestClusterOptions();
        var specs = options.ResolveNodes();
        var cluster = new TestCluster(options, simulation);
        try
        {
            foreach (var spec in specs) cluster.AddNode(spec);
            if (options.Nat is { } nat)
            {
                foreach (var spec in specs.Where(nat.IsBehindNat))
                    cluster.Network.AddNatRouter($"nat-{spec.Name}", nat.Behavior).Add(spec.Name);
            }
            var nodes = cluster.Nodes;
            foreach (var node in nodes) node.CreateStore();
            foreach (var node in nodes) await node.StartAsync(keepStorage: true, cancellationToken);
            if (options.ConnectAll) await cluster.ConnectAllAsync(cancellationToken);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <exception cref="KeyNotFoundException">No node has that name.</exception>
    public TestNode Node(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_nodes)
        {
            return _byName.TryGetValue(name, out var node)
                ? node
                : throw new KeyNotFoundException($"the cluster has no node '{name}' (nodes: {string.Join(", ", _nodes.Select(n => n.Name))})");
        }
    }

    /// <summary>The node with <paramref name="peer"/> as its identity, or null.</summary>
    public TestNode? NodeOf(PeerId peer) => Nodes.FirstOrDefault(n => n.PeerId == peer);

    /// <summary>The nodes with <paramref name="role"/>, in declaration order.</summary>
    public IReadOnlyList<TestNode> WithRole(string role) => Nodes.Where(n => n.Spec.HasRole(role)).ToArray();

    /// <summary>Adds a node to the running cluster and starts it (a late joiner).</summary>
    public async Task<TestNode> AddNodeAsync(TestNodeSpec spec, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ThrowIfDisposed();
        var node = AddNode(spec);
        node.CreateStore();
        await node.StartAsync(keepStorage: true, cancellationToken);
        return node;
    }

    /// <summary>
    /// Kills <paramref name="name"/>: the network drops it without a goodbye (its connections reset, its
    /// listener gone), its mock DHT node crashes (records go stale), its components and host are torn down.
    /// Its store is left as a killed process leaves it and recovers from what was durable on restart.
    /// </summary>
    public Task KillAsync(string name, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Node(name).StopAsync(crash: true);
    }

    /// <summary>Stops <paramref name="name"/> gracefully: components, discovery (unannounce) and host (go-away) shut down in order.</summary>
    public Task StopAsync(string name, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Node(name).StopAsync(crash: false);
    }

    /// <summary>Restarts <paramref name="name"/> keeping its storage; see <see cref="RestartAsync(string, bool, CancellationToken)"/>.</summary>
    public Task RestartAsync(string name, CancellationToken cancellationToken) => RestartAsync(name, keepStorage: true, cancellationToken);

    /// <summary>
    /// Starts <paramref name="name"/> again with the same identity (so the same PeerId), stopping it
    /// gracefully first if it is running. With <paramref name="keepStorage"/> its store reopens from what
    /// was durable (after a kill, as after a crash); without, it starts on an empty store.
    /// </summary>
    /// <returns>Once the node is ready again.</returns>
    public async Task RestartAsync(string name, bool keepStorage, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        var node = Node(name);
        await node.StopAsync(crash: false);
        await node.StartAsync(keepStorage, cancellationToken);
    }

    /// <summary>Partitions <paramref name="a"/> from <paramref name="b"/> (both ways unless <paramref name="oneWay"/>, then only a → b).</summary>
    public Task<NetworkPartition> PartitionAsync(string a, string b, PartitionMode mode = PartitionMode.Stall, bool oneWay = false,
        CancellationToken cancellationToken = default) =>
        PartitionAsync([a], [b], mode, oneWay, cancellationToken);

    /// <summary>Partitions every node of <paramref name="groupA"/> from every node of <paramref name="groupB"/>.</summary>
    /// <returns>The partition, once its immediate effects (resets) have played out; heal it alone with <see cref="NetworkPartition.Heal"/>.</returns>
    public async Task<NetworkPartition> PartitionAsync(IEnumerable<string> groupA, IEnumerable<string> groupB, PartitionMode mode = PartitionMode.Stall,
        bool oneWay = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(groupA);
        ArgumentNullException.ThrowIfNull(groupB);
        var a = groupA.ToArray();
        var b = groupB.ToArray();
        foreach (var name in a.Concat(b)) Node(name); // a typo should fail here, not partition nobody
        var partition = oneWay ? Network.PartitionOneWay(a, b, mode) : Network.Partition(a, b, mode);
        cancellationToken.ThrowIfCancellationRequested();
        await Time.RunUntilIdleAsync();
        return partition;
    }

    /// <summary>Heals every partition; stalled connections deliver what they held.</summary>
    public async Task HealAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Network.Heal();
        await Time.RunUntilIdleAsync();
    }

    /// <summary>Connects every running node to every other, and returns once both ends of every pair see the connection.</summary>
    public async Task ConnectAllAsync(CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        var running = RunningNodes;
        var dials = new List<Func<Task>>();
        for (var i = 0; i < running.Count; i++)
            for (var j = i + 1; j < running.Count; j++)
            {
                var (from, to) = (running[i], running[j]);
                if (!from.IsConnectedTo(to)) dials.Add(() => from.ConnectAsync(to, cancellationToken));
            }
        await WithinOperationTimeout(Task.WhenAll(dials.Select(d => d())), "every node dials every other");
        await Time.WaitUntilAsync(() => running.All(a => running.All(b => a == b || a.IsConnectedTo(b))), Options.OperationTimeout,
            cancellationToken, "both ends of every pair see the connection");
    }

    /// <inheritdoc cref="SimulationClock.WaitUntilAsync(Func{bool}, TimeSpan, CancellationToken, string?)"/>
    public Task WaitUntilAsync(Func<bool> condition, TimeSpan virtualTimeout, CancellationToken cancellationToken,
        [CallerArgumentExpression(nameof(condition))] string? description = null) =>
        Time.WaitUntilAsync(condition, virtualTimeout, cancellationToken, description);

    /// <inheritdoc cref="SimulationClock.WaitUntilAsync(Func{Task{bool}}, TimeSpan, CancellationToken, string?)"/>
    public Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan virtualTimeout, CancellationToken cancellationToken,
        [CallerArgumentExpression(nameof(condition))] string? description = null) =>
        Time.WaitUntilAsync(condition, virtualTimeout, cancellationToken, description);

    /// <inheritdoc cref="SimulationClock.AdvanceAsync(TimeSpan)"/>
    public Task AdvanceAsync(TimeSpan delta, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Time.AdvanceAsync(delta);
    }

    /// <summary>
    /// Awaits <paramref name="operation"/>, failing when it has not finished within
    /// <see cref="TestClusterOptions.OperationTimeout"/> of virtual time: a harness step that hangs fails
    /// with its name rather than running the simulation into its time limit.
    /// </summary>
    /// <exception cref="TimeoutException">The operation did not finish in time; names <paramref name="description"/> and the replay.</exception>
    internal async Task WithinOperationTimeout(Task operation, string description)
    {
        using var timeout = new CancellationTokenSource(Options.OperationTimeout, Time);
        try
        {
            await operation.WaitOrCancelAsync(timeout.Token);
        }
        catch (OperationCanceledException e) when (timeout.IsCancellationRequested && !operation.IsCompleted)
        {
            throw new TimeoutException($"'{description}' did not finish within {Options.OperationTimeout} of virtual time. Replay: {Simulation}", e);
        }
    }

    /// <summary>Stops every node gracefully and deletes the stores. Reports the first failure after cleaning up everything.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        var errors = new List<Exception>();
        var nodes = Nodes;
        for (var i = nodes.Count - 1; i >= 0; i--)
        {
            try
            {
                await nodes[i].StopAsync(crash: false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                errors.Add(e);
            }
        }
        foreach (var node in nodes)
        {
            try
            {
                await node.DisposeStoreAsync();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                errors.Add(e);
            }
        }
        if (errors.Count > 0)
        {
            _logger.LogWarning("the cluster did not shut down cleanly: {Errors}", string.Join("; ", errors.Select(e => e.Message)));
            throw new AggregateException("the test cluster did not shut down cleanly", errors);
        }
    }

    private TestNode AddNode(TestNodeSpec spec)
    {
        lock (_nodes)
        {
            if (_byName.ContainsKey(spec.Name)) throw new ArgumentException($"the cluster already has a node '{spec.Name}'", nameof(spec));
            var node = new TestNode(this, spec);
            _nodes.Add(node);
            _byName.Add(spec.Name, node);
            return node;
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
}
