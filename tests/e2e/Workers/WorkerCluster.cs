using System.Runtime.CompilerServices;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Client;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Processor;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// The whole P2PInference network on a <see cref="TestCluster"/>: the real stack (Noise, Yamux, RPC) over
/// the in-memory network, the real Kademlia DHT (bootstrapped through node <c>bootstrap</c>), a RAM store per
/// node kept across restarts, and the four workers started through a <see cref="WorkerContext"/> as the
/// runtime starts them (announcing the topics their start returns): <c>auth</c>, <c>gateway</c>,
/// <c>processor-1</c>…, plus a <c>client</c> node for <see cref="P2PInferenceClient"/>s. It runs inside the
/// test's simulation (<see cref="SimulationTest.Run(Func{SimulationExecutor, Task}, SimulationOptions?)"/>, with
/// <see cref="SimulationOptions"/> from <see cref="Simulation"/>): time moves by itself whenever nothing is
/// runnable, so a test simply awaits each operation; <see cref="AdvanceAsync"/> jumps ahead.
/// </summary>
internal sealed class WorkerCluster : IAsyncDisposable
{
    public const string Model = BuiltinEngineOptions.DefaultModelName;
    public const string BootstrapNode = "bootstrap";
    public const string AuthNode = "auth";
    public const string GatewayNode = "gateway";
    public const string ClientNode = "client";

    /// <summary>How long (in virtual time) one operation may take before the test fails rather than hangs.</summary>
    public static readonly TimeSpan OperationTimeout = TimeSpan.FromMinutes(2);

    /// <summary>How long workers and clients believe a grant a peer presented before asking again.</summary>
    public static readonly TimeSpan GrantCachePeriod = TimeSpan.FromSeconds(30);

    /// <summary>The simulation a worker scenario runs in: the test's seed, and an hour of virtual time at most (the DHT's timers would keep a hung run going).</summary>
    public static SimulationOptions Simulation() => SimulationTest.Options() with { MaxVirtualTime = TimeSpan.FromHours(1) };

    private readonly BuiltinEngine _engine;
    private int _clients;

    private readonly List<(string Node, GrantVerifier Verifier)> _verifiers;
    private RevocationList _revocations = RevocationList.Empty;

    private WorkerCluster(TestCluster cluster, BuiltinEngine engine, EngineGate gate, List<(string Node, GrantVerifier Verifier)> verifiers)
    {
        _verifiers = verifiers;
        Cluster = cluster;
        _engine = engine;
        Gate = gate;
    }

    public TestCluster Cluster { get; }

    /// <summary>Holds a generation on whichever processor gets it (see <see cref="EngineGate"/>).</summary>
    public EngineGate Gate { get; }

    public TestDataFactory Data => Cluster.Data;

    public TestNode Auth => Cluster[AuthNode];

    public TestNode Gateway => Cluster[GatewayNode];

    public TestNode Processor(int number) => Cluster[ProcessorName(number)];

    public static string ProcessorName(int number) => $"processor-{number}";

    /// <summary>The first gateway is <see cref="GatewayNode"/>; more are <c>gateway-2</c>….</summary>
    public static string GatewayName(int number) => number == 1 ? GatewayNode : $"gateway-{number}";

    public static async Task<WorkerCluster> StartAsync(WorkerClusterOptions? options, CancellationToken cancellationToken)
    {
        options ??= new WorkerClusterOptions();
        var gate = new EngineGate();
        // One trained model for every processor: training is the slow part, and generation keeps no state
        // (each request in these tests names its seed, so the engine's own seed source is never drawn from).
        var engine = new BuiltinEngine(new BuiltinEngineOptions { SeedSource = new Random(0) });
        var nodes = new List<TestNodeSpec>
        {
            new(BootstrapNode, "bootstrap") { Storage = false },
            new(AuthNode, "auth"),
            new(GatewayNode, "gateway"),
        };
        for (var i = 2; i <= options.Gateways; i++) nodes.Add(new TestNodeSpec(GatewayName(i), "gateway"));
        for (var i = 1; i <= options.Processors; i++) nodes.Add(new TestNodeSpec(ProcessorName(i), "processor"));
        nodes.Add(new TestNodeSpec(ClientNode, "client") { Storage = false });
        foreach (var rogue in options.Rogues) nodes.Add(new TestNodeSpec(rogue.Name, "rogue") { Storage = false });
        var verifiers = new List<(string Node, GrantVerifier Verifier)>();

        var clusterOptions = new TestClusterOptions
        {
            NodeSpecs = nodes,
            // The bootstrap node starts first and has nobody to join yet; the others join it in StartAsync.
            WaitForDiscoveryJoin = false,
            DiscoveryFactory = (context, ct) => StartDhtAsync(context, options, ct),
            Nat = options.Nat,
            Components =
            [
                TestNodeComponent.ForRoles("rpc", (context, _) => Task.FromResult<IAsyncDisposable>(new RpcNode(context.Host, new RpcOptions
                {
                    TimeProvider = context.Time,
                    Random = new Random(context.Random.Next()),
                    LoggerFactory = context.LoggerFactory,
                }, context.Discovery)), "auth", "gateway", "processor", "client", "rogue"),
                .. (options.Nat is null ? Array.Empty<TestNodeComponent>() :
                [
                    TestNodeComponent.ForRoles("nat", (context, ct) => StartNatAsync(context, options.NatSettings(), ct), "bootstrap", "auth", "gateway", "processor"),
                ]),
                TestNodeComponent.ForRoles("rogue", (context, ct) => StartRogueAsync(context, options.Rogues.Single(r => r.Name == context.Name), ct), "rogue"),
                TestNodeComponent.ForRoles("auth worker", (context, ct) => StartWorkerAsync(context, new AuthWorker(options.Auth()), verifiers, ct), "auth"),
                TestNodeComponent.ForRoles("gateway worker", (context, ct) => StartWorkerAsync(context, new GatewayWorker(options.Gateway()), verifiers, ct), "gateway"),
                TestNodeComponent.ForRoles("processor worker", (context, ct) =>
                    StartWorkerAsync(context, new ProcessorWorker(options.Processor(), new GatedEngine(engine, gate, context.Name)), verifiers, ct), "processor"),
            ],
        };
        try
        {
            var cluster = await TestCluster.StartAsync(clusterOptions, cancellationToken);
            return new WorkerCluster(cluster, engine, gate, verifiers);
        }
        catch
        {
            engine.Dispose();
            throw;
        }
    }

    /// <summary>A new client on the client node (its own credentials; the node's RPC and DHT).</summary>
    public P2PInferenceClient NewClient(ClientOptions? options = null)
    {
        var node = Cluster[ClientNode];
        var number = Interlocked.Increment(ref _clients);
        options ??= new ClientOptions();
        options = options with
        {
            TimeProvider = Cluster.Time,
            ClusterId = options.ClusterId ?? Cluster.ClusterId,
            Revocations = _revocations,
            GrantCachePeriod = GrantCachePeriod,
            Random = Cluster.Simulation.CreateRandom("client", number.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            LoggerFactory = Cluster.LoggerFactory,
        };
        return new P2PInferenceClient(node.Get<RpcNode>(), options);
    }

    /// <summary>Registers a fresh user, logs in and creates an API key: a client ready for inference.</summary>
    public async Task<(P2PInferenceClient Client, TestUser User, string UserId)> SignedUpClientAsync(CancellationToken cancellationToken)
    {
        var client = NewClient();
        var user = Data.User();
        var registered = await client.RegisterAsync(user.Email, user.Password, cancellationToken);
        await client.LoginAsync(user.Email, user.Password, cancellationToken);
        await client.CreateApiKeyAsync("e2e", cancellationToken);
        return (client, user, registered.UserId);
    }

    /// <summary>Awaits an operation expected to fail: returns its <see cref="RpcException"/>.</summary>
    public static async Task<RpcException> FailureOfAsync(Func<Task> operation,
        [CallerArgumentExpression(nameof(operation))] string? description = null)
    {
        try
        {
            await operation();
        }
        catch (RpcException e)
        {
            return e;
        }
        throw new AssertionException($"`{description}` succeeded; an RpcException was expected");
    }

    /// <inheritdoc cref="SimulationClock.WaitUntilAsync(Func{bool}, TimeSpan, CancellationToken, string?)"/>
    public Task WaitUntilAsync(Func<bool> condition, [CallerArgumentExpression(nameof(condition))] string? description = null) =>
        Cluster.WaitUntilAsync(condition, OperationTimeout, CancellationToken.None, description);

    /// <summary>Moves virtual time forward, letting every timer due on the way (DHT refresh, re-announce, caches) run.</summary>
    public Task AdvanceAsync(TimeSpan delta) => Cluster.Time.AdvanceAsync(delta);

    public async ValueTask DisposeAsync()
    {
        Gate.Release();
        await Cluster.DisposeAsync();
        _engine.Dispose();
    }

    private static async Task<IDiscovery> StartDhtAsync(TestNodeContext context, WorkerClusterOptions options, CancellationToken cancellationToken)
    {
        var bootstrap = context.Spec.HasRole("bootstrap");
        var dht = new KademliaDht(context.Host, new KademliaDhtOptions
        {
            Mode = context.Spec.HasRole("client") ? DhtMode.Client : DhtMode.Server,
            BootstrapPeers = bootstrap ? [] : [context.Cluster[BootstrapNode].Address],
            ProviderRecordTtl = options.ProviderRecordTtl,
            RefreshInterval = options.DhtRefreshInterval,
            QueryTimeout = TimeSpan.FromSeconds(2),
            LookupTimeout = TimeSpan.FromSeconds(5),
            TimeProvider = context.Time,
            RandomSeed = context.Random.Next(),
            LoggerFactory = context.LoggerFactory,
        });
        try
        {
            await dht.StartAsync(cancellationToken);
        }
        catch
        {
            await dht.DisposeAsync();
            throw;
        }
        return dht;
    }

    /// <summary>
    /// The worker's NAT service, as the runtime runs it: AutoNAT, and relay reservations while unreachable,
    /// after which the worker's topics are announced again with the circuit addresses.
    /// </summary>
    private static async Task<IAsyncDisposable> StartNatAsync(TestNodeContext context, NatSettings settings, CancellationToken cancellationToken)
    {
        var nat = new WorkerNat(context.Host, context.Discovery, context.CircuitRelay, new WorkerNatOptions
        {
            Settings = settings,
            AddressesChanged = async ct =>
            {
                foreach (var topic in context.TryGet<RunningWorker>()?.Topics ?? []) await context.Discovery.AnnounceAsync(topic, ct);
            },
            LoggerFactory = context.LoggerFactory,
        });
        await nat.StartAsync(cancellationToken);
        return nat;
    }

    /// <summary>The rogue node <paramref name="name"/>'s recorder.</summary>
    public RoguePeer Rogue(string name) => Cluster[name].Get<RoguePeer>();

    public IEnumerable<RoguePeer> Rogues => Cluster.WithRole("rogue").Where(n => n.IsRunning).Select(n => n.Get<RoguePeer>());

    /// <summary>The operator distributes a new revocation list: every worker and every client made after this holds it.</summary>
    public void Revoke(RevocationList revocations)
    {
        _revocations = revocations;
        lock (_verifiers)
        {
            foreach (var (_, verifier) in _verifiers) verifier.Revocations = revocations;
        }
    }

    /// <summary>The signed revocation list the worker <paramref name="node"/> holds now; null when none.</summary>
    public SignedRevocationList? SignedRevocationsOf(string node)
    {
        lock (_verifiers) return _verifiers.Single(v => v.Node == node).Verifier.SignedRevocations;
    }

    /// <summary>
    /// The operator gives the worker <paramref name="node"/> alone a signed revocation list (its <c>Trust:RevocationList</c>);
    /// every other worker and client learns it from the peers whose grants it checks.
    /// </summary>
    public void InstallSignedRevocations(string node, SignedRevocationList list)
    {
        lock (_verifiers)
        {
            var (_, verifier) = _verifiers.Single(v => v.Node == node);
            if (verifier.Adopt(list, out var reason) != RevocationListAdoption.Taken) throw new ArgumentException($"{node} does not take {list}: {reason}", nameof(list));
        }
    }

    private static async Task<IAsyncDisposable> StartRogueAsync(TestNodeContext node, RogueSpec spec, CancellationToken cancellationToken)
    {
        var rogue = new RoguePeer(node.Get<RpcNode>(), spec.Grant(node.Cluster, node.Node.PeerId), spec.Silent);
        foreach (var topic in spec.Topics) await node.Discovery.AnnounceAsync(topic, cancellationToken);
        return rogue;
    }

    private static async Task<IAsyncDisposable> StartWorkerAsync(TestNodeContext node, IWorker worker, List<(string Node, GrantVerifier Verifier)> verifiers,
        CancellationToken cancellationToken)
    {
        var rpc = node.Get<RpcNode>();
        var verifier = new GrantVerifier(node.Cluster.ClusterId, node.Time);
        lock (verifiers)
        {
            if (verifiers.Count > 0) verifier.Revocations = verifiers[0].Verifier.Revocations;
            verifiers.Add((node.Name, verifier));
        }
        // As the runtime does: the node's grant (of the cluster's seeded key) served, callees checked, callers checked.
        var (server, client) = WorkerTrust.Secure(WorkerRoles.Parse(worker.Role), node.Node.PeerId, new HeldGrant(node.Node.Grant!),
            verifier, rpc, rpc, GrantCachePeriod, node.LoggerFactory);
        node.Host.KeepInboundCapacityFor(client.HoldsGrantAsync);
        var context = new WorkerContext
        {
            Identity = node.Node.Identity,
            Server = server,
            Client = client,
            Discovery = node.Discovery,
            Store = node.Store,
            Time = node.Time,
            Random = new Random(node.Random.Next()),
            // Keys, tokens and ids from the seed too: a journey replays down to the API key it creates.
            RandomSource = new SeededRandomSource(new Random(node.Random.Next())),
            LoggerFactory = node.LoggerFactory,
        };
        var topics = await worker.StartAsync(context, cancellationToken);
        foreach (var topic in topics) await node.Discovery.AnnounceAsync(topic, cancellationToken);
        return new RunningWorker(worker, topics);
    }

    /// <summary>A started worker as a node component: stopping the node stops it (its RPC node and DHT go with the node).</summary>
    internal sealed class RunningWorker(IWorker worker, IReadOnlyList<string> topics) : IAsyncDisposable
    {
        public IWorker Worker => worker;

        public IReadOnlyList<string> Topics => topics;

        public async ValueTask DisposeAsync() => await worker.StopAsync(CancellationToken.None);
    }
}
