using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;
using P2PInference.TestKit.Store;

namespace P2PInference.TestKit.Harness;

/// <summary>
/// One node of a <see cref="TestCluster"/>: a host on the in-memory network at <c>/memory/&lt;name&gt;</c>,
/// with its store, discovery and components. Its identity comes from the cluster's seed and its name, so
/// its <see cref="PeerId"/> is the same across restarts (and across runs with the same seed).
/// </summary>
/// <remarks>
/// <see cref="Host"/>, <see cref="Discovery"/> and the components belong to the current start of the node
/// and are replaced by a restart; <see cref="Store"/> and the <see cref="PeerConnected"/> and
/// <see cref="PeerDisconnected"/> events stay with the node.
/// </remarks>
public sealed class TestNode
{
    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private readonly ILogger _logger;
    private TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Incarnation? _current;
    private StoreState _storeState = StoreState.Fresh;

    internal TestNode(TestCluster cluster, TestNodeSpec spec)
    {
        Cluster = cluster;
        Spec = spec;
        Identity = KeyPair.FromSeed(SeedDerivation.Bytes(cluster.Seed, "identity", spec.Name));
        _logger = cluster.LoggerFactory.CreateLogger($"P2PInference.TestKit.Harness.TestNode.{spec.Name}");
    }

    private enum StoreState
    {
        Fresh,
        Open,
        StoppedCleanly,
        Crashed,
    }

    public TestCluster Cluster { get; }

    public TestNodeSpec Spec { get; }

    public string Name => Spec.Name;

    public IReadOnlySet<string> Roles => Spec.Roles;

    public KeyPair Identity { get; }

    public PeerId PeerId => Identity.PeerId;

    /// <summary>
    /// The node's grant of the cluster's key (<see cref="TestCluster.ClusterKey"/>) for its first worker role
    /// (auth, gateway or processor), issued when first read; null for a node with none of those roles.
    /// </summary>
    public RoleGrant? Grant => _grant ??= GrantRoleOfSpec() is { } role ? Cluster.IssueGrant(PeerId, role) : null;

    private RoleGrant? _grant;

    private GrantRole? GrantRoleOfSpec()
    {
        foreach (var name in new[] { "auth", "gateway", "processor" })
            if (Spec.HasRole(name) && GrantRoles.TryParse(name, out var role)) return role;
        return null;
    }

    /// <summary><c>/memory/&lt;name&gt;</c>: where the node listens.</summary>
    public Multiaddress ListenAddress => InMemoryNetwork.AddressOf(Name);

    /// <summary><c>/memory/&lt;name&gt;/p2p/&lt;PeerId&gt;</c>: how others dial it.</summary>
    public Multiaddress Address => ListenAddress.WithPeerId(PeerId);

    public bool IsRunning => Volatile.Read(ref _current) is not null;

    /// <summary>Completes when the node has started (host listening, store open, discovery joined, components started); a stop replaces it with one that completes on the next start.</summary>
    public Task Ready => Volatile.Read(ref _ready).Task;

    /// <summary>How many times the node has started (the first start included).</summary>
    public int Starts { get; private set; }

    /// <summary>The running host.</summary>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public P2PHost Host => Current.Host;

    /// <summary>The node's store: the same <see cref="SimulatedStore"/> across restarts (acknowledged writes survive a crash), a new one after a wipe; null without storage.</summary>
    public SimulatedStore? Store { get; private set; }

    /// <summary>The running node's discovery; null when it is not running or the cluster has none.</summary>
    public IDiscovery? Discovery => Volatile.Read(ref _current)?.Discovery;

    /// <summary>The running node's mock DHT node, when the cluster uses the mock DHT.</summary>
    public MockDht? MockDht => Discovery as MockDht;

    /// <summary>The running node's components, in start order.</summary>
    public IReadOnlyList<object> Components
    {
        get
        {
            var current = Volatile.Read(ref _current);
            if (current is null) return [];
            lock (current.Components) return current.Components.ToArray();
        }
    }

    /// <summary>The context the running node's components got.</summary>
    /// <exception cref="InvalidOperationException">The node is not running.</exception>
    public TestNodeContext Context => Current.Context;

    /// <summary>A connection to a peer opened, on whichever host the node is running (subscriptions survive restarts).</summary>
    public event Action<PeerConnection>? PeerConnected;

    /// <summary>A connection to a peer closed, on whichever host the node is running (subscriptions survive restarts).</summary>
    public event Action<PeerConnection>? PeerDisconnected;

    private Incarnation Current => Volatile.Read(ref _current) ?? throw new InvalidOperationException($"node '{Name}' is not running");

    /// <summary>The running node's first component that is a <typeparamref name="T"/>.</summary>
    /// <exception cref="InvalidOperationException">Not running, or no such component.</exception>
    public T Get<T>() where T : class => Current.Context.Get<T>();

    /// <summary>Whether the running host has an open connection to <paramref name="other"/>.</summary>
    public bool IsConnectedTo(TestNode other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Volatile.Read(ref _current)?.Host.GetConnection(other.PeerId) is { IsClosed: false };
    }

    /// <summary>Connects to <paramref name="other"/> (or returns the open connection).</summary>
    public Task<PeerConnection> ConnectAsync(TestNode other, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Host.ConnectAsync(other.Address, cancellationToken);
    }

    /// <summary>Pings <paramref name="other"/> over the stack, dialing it if needed.</summary>
    /// <returns>The round trip, in the cluster's virtual time.</returns>
    public Task<TimeSpan> PingAsync(TestNode other, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(other);
        var host = Host;
        host.PeerStore.AddAddresses(other.PeerId, [other.ListenAddress]);
        return host.PingAsync(other.PeerId, cancellationToken);
    }

    public override string ToString() => $"{Spec} {PeerId}{(IsRunning ? "" : " (down)")}";

    internal void CreateStore()
    {
        if (Store is null && (Spec.Storage ?? Cluster.Options.Storage))
        {
            Store = new SimulatedStore();
            _storeState = StoreState.Open;
        }
    }

    internal async Task StartAsync(bool keepStorage, CancellationToken cancellationToken)
    {
        await _lifecycle.EnterAsync(cancellationToken);
        try
        {
            if (_current is not null) throw new InvalidOperationException($"node '{Name}' is already running");
            await PrepareStoreAsync(keepStorage, cancellationToken);
            Starts++;
            var incarnation = CreateIncarnation();
            try
            {
                // As the node: the trace names it for every step its host, discovery and components run.
                await SimulationExecutor.InNode(Name, () => StartIncarnationAsync(incarnation, cancellationToken));
            }
            catch
            {
                await incarnation.ShutdownAsync(crash: true, Cluster.Network, _logger);
                throw;
            }
            Volatile.Write(ref _current, incarnation);
            _logger.LogDebug("node {Node} started ({Starts})", Name, Starts);
            _ready.TrySetResult();
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>Stops the node: <paramref name="crash"/> kills it without a goodbye, otherwise it shuts down gracefully. A node that is not running is left alone.</summary>
    internal async Task StopAsync(bool crash)
    {
        await _lifecycle.EnterAsync(CancellationToken.None);
        try
        {
            var incarnation = _current;
            if (incarnation is null) return;
            Volatile.Write(ref _current, null);
            if (_ready.Task.IsCompleted)
                Volatile.Write(ref _ready, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            if (Store is not null) _storeState = crash ? StoreState.Crashed : StoreState.StoppedCleanly;
            _logger.LogDebug("node {Node} {How}", Name, crash ? "killed" : "stopping");
            var errors = await incarnation.ShutdownAsync(crash, Cluster.Network, _logger);
            if (errors.Count > 0 && !crash)
                throw new AggregateException($"node '{Name}' did not stop cleanly", errors);
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    internal async Task DisposeStoreAsync()
    {
        if (Store is not null) await Store.DisposeAsync();
        Store = null;
    }

    private async Task PrepareStoreAsync(bool keepStorage, CancellationToken cancellationToken)
    {
        if (!keepStorage && Store is not null && _storeState != StoreState.Fresh)
        {
            await DisposeStoreAsync();
        }
        if (Store is null)
        {
            CreateStore();
            return;
        }
        switch (_storeState)
        {
            case StoreState.Crashed:
                // The kill abandoned the store mid-flight: reopen it from what was durable, as after a process crash.
                await Store.CrashAndRestartAsync(cancellationToken);
                break;
            case StoreState.StoppedCleanly:
                await Store.RestartAsync(cancellationToken);
                break;
        }
        _storeState = StoreState.Open;
    }

    private Incarnation CreateIncarnation()
    {
        var options = Cluster.Options;
        var hostOptions = new HostOptions
        {
            Identity = Identity,
            // With NAT in the cluster, circuit addresses are dialled (and listened on) first, as they must be.
            Transports = options.Nat is null
                ? [Cluster.Network.CreateTransport(Name)]
                : [new CircuitRelayTransport(new CircuitRelayOptions { LoggerFactory = Cluster.LoggerFactory }), Cluster.Network.CreateTransport(Name)],
            TimeProvider = Cluster.Time,
            RandomSource = new SeededRandomSource(Cluster.Simulation.CreateRandom("entropy", Name, Starts.ToString(System.Globalization.CultureInfo.InvariantCulture))),
            LoggerFactory = Cluster.LoggerFactory,
        };
        if (options.ConfigureHost is not null) hostOptions = options.ConfigureHost(Spec, hostOptions);
        var host = new P2PHost(hostOptions);
        host.PeerConnected += c => EventSubscribers.Raise(PeerConnected, c, _logger, $"{nameof(TestNode)}.{nameof(PeerConnected)}");
        host.PeerDisconnected += c => EventSubscribers.Raise(PeerDisconnected, c, _logger, $"{nameof(TestNode)}.{nameof(PeerDisconnected)}");
        var stopping = new CancellationTokenSource();
        var components = new List<object>();
        var context = new TestNodeContext(this, host, Store, components, stopping.Token)
        {
            CircuitRelay = hostOptions.Transports.OfType<CircuitRelayTransport>().FirstOrDefault(),
        };
        return new Incarnation(host, context, stopping, components);
    }

    private async Task StartIncarnationAsync(Incarnation incarnation, CancellationToken cancellationToken)
    {
        var options = Cluster.Options;
        await incarnation.Host.StartAsync([ListenAddress], cancellationToken);

        IDiscovery? discovery = Cluster.DiscoveryKind switch
        {
            TestDiscoveryKind.MockDht => Cluster.MockDht!.CreateNode(PeerId, incarnation.Host.AdvertisedAddresses),
            TestDiscoveryKind.Custom => await options.DiscoveryFactory!(incarnation.Context, cancellationToken),
            _ => null,
        };
        incarnation.Discovery = discovery;
        incarnation.Context.SetDiscovery(discovery);
        if (discovery is not null && options.WaitForDiscoveryJoin)
        {
            await Cluster.WithinOperationTimeout(discovery.WaitUntilJoinedAsync(cancellationToken), $"node '{Name}' joins discovery");
        }

        if (options.Nat is { RelayNode: { } relayNode } nat && relayNode == Name)
        {
            var relay = new RelayService(incarnation.Host, nat.Relay ?? new RelayServiceOptions { LoggerFactory = Cluster.LoggerFactory });
            lock (incarnation.Components) incarnation.Components.Add(relay);
            if (discovery is not null) await discovery.AnnounceAsync(RelayService.DiscoveryTopic, cancellationToken);
        }

        foreach (var component in options.Components)
        {
            if (!component.RunsOn(Spec)) continue;
            IAsyncDisposable started;
            try
            {
                started = await component.Start(incarnation.Context, cancellationToken)
                    ?? throw new InvalidOperationException("the component's Start returned null; return NoOpDisposable.Instance when there is nothing to stop");
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new InvalidOperationException($"component '{component.Name}' failed to start on node '{Name}': {e.Message}", e);
            }
            lock (incarnation.Components) incarnation.Components.Add(started);
        }
    }

    /// <summary>One start of the node: what a stop or kill tears down.</summary>
    private sealed class Incarnation(P2PHost host, TestNodeContext context, CancellationTokenSource stopping, List<object> components)
    {
        public P2PHost Host { get; } = host;
        public TestNodeContext Context { get; } = context;
        public List<object> Components { get; } = components;
        public IDiscovery? Discovery { get; set; }

        public async Task<List<Exception>> ShutdownAsync(bool crash, InMemoryNetwork network, ILogger logger)
        {
            var errors = new List<Exception>();
            var name = Context.Name;
            if (crash)
            {
                // First cut the node off, so nothing it does while being torn down reaches anyone: no goodbye.
                network.Crash(name);
                if (Discovery is MockDht mock) mock.Crash();
            }
            try
            {
                // Cancel, not CancelAsync: the callbacks run here, on the simulation's thread, not on the thread pool.
                stopping.Cancel();
            }
            catch (AggregateException e)
            {
                errors.AddRange(e.InnerExceptions);
            }

            object[] started;
            lock (Components) started = [.. Components];
            for (var i = started.Length - 1; i >= 0; i--)
                await DisposeQuietlyAsync(started[i], errors);
            if (Discovery is not null && !(crash && Discovery is MockDht))
                await DisposeQuietlyAsync(Discovery, errors);
            await DisposeQuietlyAsync(Host, errors);
            // Sweeps up anything the host left open (e.g. a dial that completed during shutdown).
            if (!crash) network.Stop(name);
            stopping.Dispose();
            foreach (var e in errors) logger.LogDebug(e, "while {How} node {Node}", crash ? "killing" : "stopping", name);
            return errors;
        }

        private static async Task DisposeQuietlyAsync(object item, List<Exception> errors)
        {
            try
            {
                switch (item)
                {
                    case IAsyncDisposable asyncDisposable:
                        await asyncDisposable.DisposeAsync();
                        break;
                    case IDisposable disposable:
                        disposable.Dispose();
                        break;
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                errors.Add(e);
            }
        }
    }
}
