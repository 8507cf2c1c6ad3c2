using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Hosting;

namespace P2PInference.Workers.Simulation;

/// <summary>
/// One server node of a <see cref="NetworkSimulation"/>, started as <see cref="WorkerRuntime"/> starts a
/// node — host, DHT, RPC, worker, announce — but over the in-memory network and without files: its key is
/// drawn from the seed and its store is in memory. A crash kills the node's connections at once and
/// drops the process; a restart brings it back with the same identity and the same store, as a process
/// restarted on the same disk (whose acknowledged writes are durable) would be.
/// </summary>
internal sealed class SimulatedNode
{
    private readonly SimulationExecutor _sim;
    private readonly InMemoryNetwork _network;
    private readonly Func<IWorker?> _newWorker;
    private readonly Func<IReadOnlyList<Multiaddress>> _bootstrap;
    private readonly IKeyValueStore _store;
    private P2PHost? _host;
    private KademliaDht? _dht;
    private WorkerNat? _nat;
    private readonly NatSettings? _natSettings;
    private RpcNode? _rpc;
    private IWorker? _worker;
    private int _incarnation;
    private readonly ClusterKey _cluster;

    public SimulatedNode(SimulationExecutor sim, InMemoryNetwork network, string name, string role, IKeyValueStore store,
        Func<IWorker?> newWorker, Func<IReadOnlyList<Multiaddress>> bootstrap, ClusterKey cluster, NatSettings? nat = null)
    {
        _natSettings = nat;
        _cluster = cluster;
        _sim = sim;
        _network = network;
        Name = name;
        Role = role;
        _store = store;
        _newWorker = newWorker;
        _bootstrap = bootstrap;
        Identity = KeyPair.FromRandom(sim.CreateRandom("identity", name));
        // Every node has a clock of its own, so a skew fault can move it without touching the others.
        Clock = sim.CreateNodeClock();
    }

    public string Name { get; }

    public string Role { get; }

    public KeyPair Identity { get; }

    public NodeClock Clock { get; }

    public bool IsUp => _host is not null;

    /// <summary>The running node's NAT service (AutoNAT, relay reservations), when the run has NAT.</summary>
    public WorkerNat? Nat => _nat;

    public Multiaddress Address => InMemoryNetwork.AddressOf(Name).WithPeerId(Identity.PeerId);

    /// <summary>Starts (or restarts) the node; a failed start leaves it down.</summary>
    public Task StartAsync(CancellationToken cancellationToken) => SimulationExecutor.InNode(Name, async () =>
    {
        try
        {
            await StartCoreAsync(cancellationToken);
        }
        catch
        {
            await StopCoreAsync();
            throw;
        }
    });

    private async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        var incarnation = (_incarnation++).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var circuit = _natSettings is null ? null : new CircuitRelayTransport();
        var host = new P2PHost(new HostOptions
        {
            Identity = Identity,
            // With NAT in the run, circuit addresses are dialled (and listened on) first, as they must be.
            Transports = circuit is null ? [_network.CreateTransport(Name)] : [circuit, _network.CreateTransport(Name)],
            TimeProvider = Clock,
            // Yamux keeps a clock of its own (System by default): its keep-alive timers must be simulated too.
            Yamux = new YamuxOptions { TimeProvider = Clock },
            RandomSource = new SeededRandomSource(_sim.CreateRandom("entropy", Name, incarnation)),
        });
        _host = host;
        await host.StartAsync([InMemoryNetwork.AddressOf(Name)], cancellationToken);
        var random = _sim.CreateRandom("node", Name, incarnation);
        var isBootstrap = Role == "bootstrap";
        _dht = new KademliaDht(host, new KademliaDhtOptions
        {
            Mode = DhtMode.Server,
            BootstrapPeers = isBootstrap ? [] : _bootstrap(),
            QueryTimeout = TimeSpan.FromSeconds(2),
            LookupTimeout = TimeSpan.FromSeconds(5),
            TimeProvider = Clock,
            RandomSeed = random.Next(),
        });
        await _dht.StartAsync(cancellationToken);
        var discovery = new ReannouncingDiscovery(_dht);
        if (_natSettings is not null)
        {
            _nat = new WorkerNat(host, discovery, circuit, new WorkerNatOptions
            {
                Settings = _natSettings,
                AddressesChanged = discovery.ReannounceAsync,
            });
            await _nat.StartAsync(cancellationToken);
        }
        if (isBootstrap || Role == "relay") return;
        _rpc = new RpcNode(host, new RpcOptions
        {
            TimeProvider = Clock,
            Random = new Random(random.Next()),
            RandomSource = host.RandomSource,
            BulkMethods = RpcSettings.BulkMethods,
        }, discovery);
        _worker = _newWorker() ?? throw new InvalidOperationException($"node {Name} has no worker");
        var workerRole = WorkerRoles.Parse(Role);
        // Valid a day either side of now: skew faults move this node's clock, and grants must not be what they break.
        var now = Clock.GetUtcNow();
        var grant = _cluster.Issue(Identity.PeerId, WorkerTrust.GrantRoleOf(workerRole)!.Value, now - TimeSpan.FromDays(1), now + TimeSpan.FromDays(365),
            (ulong)random.NextInt64());
        var (server, client) = WorkerTrust.Secure(workerRole, Identity.PeerId, new HeldGrant(grant), new GrantVerifier(_cluster.Id, Clock), _rpc, _rpc,
            TimeSpan.FromSeconds(30), Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        host.KeepInboundCapacityFor(client.HoldsGrantAsync);
        var context = new WorkerContext
        {
            Identity = Identity,
            Server = server,
            Client = client,
            Discovery = discovery,
            Store = _store,
            Time = Clock,
            Random = new Random(random.Next()),
            // Keys, tokens and ids from the seed too.
            RandomSource = host.RandomSource,
        };
        var topics = await _worker.StartAsync(context, cancellationToken);
        foreach (var topic in topics) await discovery.AnnounceAsync(topic, cancellationToken);
    }

    /// <summary>The process dies: its connections are reset and its listener is gone before anything of it runs again.</summary>
    public async Task CrashAsync()
    {
        if (_host is null) return;
        _network.Crash(Name);
        await SimulationExecutor.InNode(Name, StopCoreAsync);
    }

    /// <summary>A clean stop (the end of the run).</summary>
    public Task StopAsync() => _host is null ? Task.CompletedTask : SimulationExecutor.InNode(Name, StopCoreAsync);

    private async Task StopCoreAsync()
    {
        // What a dead process leaves behind is freed; its peers already saw the connections go.
        var worker = _worker;
        var rpc = _rpc;
        var dht = _dht;
        var nat = _nat;
        var host = _host;
        _nat = null;
        _worker = null;
        _rpc = null;
        _dht = null;
        _host = null;
        if (worker is not null) await worker.StopAsync(CancellationToken.None);
        if (rpc is not null) await rpc.DisposeAsync();
        if (nat is not null) await nat.DisposeAsync();
        if (dht is not null) await dht.DisposeAsync();
        if (host is not null) await host.DisposeAsync();
    }
}
