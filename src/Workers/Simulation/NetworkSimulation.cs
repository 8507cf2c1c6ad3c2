using System.Globalization;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.Facilities.Store;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;
using P2PInference.TestKit.Store;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Processor;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Workers.Simulation;

/// <summary>
/// A whole P2PInference network in one seeded simulation: the real stack (Noise, Yamux, RPC, Kademlia)
/// over the TestKit's in-memory network, on one <see cref="SimulationExecutor"/> — a bootstrap node, Auth,
/// gateways, processors with the builtin engine, and clients walking the user journey — under a chosen
/// fault mix for a virtual duration, checking <see cref="SimulationInvariants"/> as it goes. The seed
/// decides keys, link jitter, think times, faults and (with <see cref="ScheduleStrategy.Random"/>) the
/// interleaving, so a failing run replays from its seed.
/// </summary>
public sealed class NetworkSimulation
{
    /// <summary>Virtual time the network gets to form before the clients start, and to settle after the faults heal.</summary>
    public static readonly TimeSpan SettleTime = TimeSpan.FromSeconds(30);

    private readonly SimulationSettings _settings;
    private readonly List<SimulatedNode> _servers = [];
    private readonly List<SimulatedClient> _clients = [];
    private readonly Dictionary<string, Dictionary<string, long>> _requests = new(StringComparer.Ordinal);
    private readonly List<Task> _abandoned = [];
    private ServedRequestEngine? _engine;

    private NetworkSimulation(SimulationExecutor executor, SimulationSettings settings)
    {
        Executor = executor;
        _settings = settings;
        Network = new InMemoryNetwork(executor.Clock, settings.Seed);
        Cluster = ClusterKey.Generate(new SeededRandomSource(executor.CreateRandom("cluster key")));
    }

    /// <summary>The simulated operator's key: every server holds a grant of it, every client trusts its id.</summary>
    internal ClusterKey Cluster { get; }

    internal SimulationExecutor Executor { get; }

    internal InMemoryNetwork Network { get; }

    internal SimulationInvariants Invariants { get; } = new();

    internal IReadOnlyList<SimulatedNode> Servers => _servers;

    internal IEnumerable<string> AllNodeNames => _servers.Select(s => s.Name).Concat(_clients.Select(c => c.Name));

    /// <summary>Runs a simulation to the end on the calling thread (which it blocks) and reports it.</summary>
    /// <exception cref="ArgumentException">The settings are out of range.</exception>
    /// <exception cref="SimulationException">The run itself broke (deadlock, escape, a step threw): the report could not be made.</exception>
    public static SimulationReport Run(SimulationSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        var executor = new SimulationExecutor(new SimulationOptions
        {
            Seed = settings.Seed,
            Strategy = settings.Schedule,
            MaxVirtualTime = settings.VirtualDuration + TimeSpan.FromHours(1),
            MaxSteps = long.MaxValue,
        });
        var simulation = new NetworkSimulation(executor, settings);
        var wallStart = TimeProvider.System.GetTimestamp();
        executor.Run(simulation.RunAsync);
        var wall = TimeProvider.System.GetElapsedTime(wallStart);
        return new SimulationReport
        {
            Settings = settings,
            TraceHash = executor.TraceHash,
            Steps = executor.Steps,
            VirtualTime = executor.Clock.Elapsed,
            WallTime = wall,
            Faults = simulation._faultsInjected,
            Requests = simulation._requests.ToDictionary(r => r.Key, r => (IReadOnlyDictionary<string, long>)r.Value, StringComparer.Ordinal),
            Invariants = simulation.Invariants.All,
            NatReservations = simulation._natReservations,
        };
    }

    private IReadOnlyDictionary<string, int> _faultsInjected = new Dictionary<string, int>();
    private (int, int, int) _natReservations;

    /// <summary>
    /// The <c>Nat</c> section of a server of <paramref name="role"/>, or null without NAT in the run.
    /// Every server runs AutoNAT (there are enough to ask); the relay relays; processors give AutoNAT
    /// 30 s — nobody can dial them back, so it never decides — and then reserve.
    /// </summary>
    private Hosting.NatSettings? NatSettingsFor(string role) => _settings.Nat == SimulationNat.None ? null : new Hosting.NatSettings
    {
        RelayService = role == "relay",
        UnknownReachabilityGrace = TimeSpan.FromSeconds(30),
        RelaySearchInterval = TimeSpan.FromSeconds(30),
    };

    internal void Count(string kind, string outcome)
    {
        if (!_requests.TryGetValue(kind, out var outcomes)) _requests[kind] = outcomes = new Dictionary<string, long>(StringComparer.Ordinal);
        outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
    }

    /// <summary>A request given up as hung: it may still finish, and must not fail the run when it does.</summary>
    internal void Abandoned(Task request) => _abandoned.Add(request.ContinueWith(static _ => { }, CancellationToken.None,
        TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Current));

    private async Task RunAsync()
    {
        using var stop = new CancellationTokenSource();
        var ct = stop.Token;
        var clock = Executor.Clock;
        SimulationFaultPlan.ConfigureBaseLinks(Network);
        _engine = new ServedRequestEngine(new BuiltinEngine(new BuiltinEngineOptions
        {
            TimeProvider = clock,
            SeedSource = Executor.CreateRandom("engine"),
            // A pause per token, so streams are streams and a cancel has something to cut short.
            TokenInterval = TimeSpan.FromMilliseconds(20),
            StopAtEndOfText = false,
        }));
        using var engine = _engine;
        // One store shared by the nodes, each in its own prefix. It outlives a node's crash as a disk would.
        await using var stores = new SimulatedStore();

        var bootstrap = AddServer("bootstrap", "bootstrap", null);
        if (_settings.Nat != SimulationNat.None) AddServer("relay", "relay", null);
        AddServer("auth", "auth", () => new AuthWorker(new AuthOptions { PasswordIterations = AuthOptions.MinPasswordIterations }));
        for (var i = 1; i <= _settings.Gateways; i++) AddServer(Name("gateway", i), "gateway", () => new GatewayWorker(new GatewayOptions()));
        for (var i = 1; i <= _settings.Processors; i++)
            AddServer(Name("processor", i), "processor", () => new ProcessorWorker(new ProcessorOptions(), _engine));

        SimulatedNode AddServer(string name, string role, Func<Hosting.IWorker?>? worker)
        {
            var node = new SimulatedNode(Executor, Network, name, role, new PrefixedKeyValueStore(stores, name), worker ?? (() => null),
                () => [_servers[0].Address], Cluster, NatSettingsFor(role));
            if (_settings.Nat != SimulationNat.None && role == "processor")
                Network.AddNatRouter("nat-" + name, _settings.Nat == SimulationNat.Symmetric ? NatBehavior.Symmetric : NatBehavior.PortRestrictedCone).Add(name);
            _servers.Add(node);
            return node;
        }

        await bootstrap.StartAsync(ct);
        await Task.WhenAll(_servers.Skip(1).Select(s => s.StartAsync(ct)));
        for (var i = 1; i <= _settings.Clients; i++) _clients.Add(new SimulatedClient(this, i));
        await Task.WhenAll(_clients.Select(c => c.StartAsync([bootstrap.Address], ct)));
        await clock.AdvanceAsync(SettleTime);

        var end = clock.GetUtcNow() + _settings.VirtualDuration;
        var faults = new SimulationFaultPlan(this, _settings.Faults);
        var faulting = faults.RunAsync(end, ct);
        var probe = RateLimitProbeAsync(end, ct);
        await Task.WhenAll(_clients.Select(c => c.RunJourneyAsync(end, ct)).Append(probe));
        var behindNat = _settings.Nat == SimulationNat.None ? [] : _servers.Where(s => s.Role == "processor").ToArray();
        _natReservations = (behindNat.Count(s => s.Nat?.Relays.Count > 0), behindNat.Count(s => s.Nat?.Status.Reachability == NatReachability.Private), behindNat.Length);
        await faulting;
        _faultsInjected = faults.Injected;

        await faults.HealAllAsync();
        await clock.AdvanceAsync(SettleTime);
        await Task.WhenAll(_clients.Select(c => c.VerifyAcknowledgedAsync(ct)));
        foreach (var (tag, times) in _engine.ServedMoreThanOnce)
            Invariants.ServedOnce.Check(false, () => $"request {tag} was generated to its end {times} times");
        Invariants.ServedOnce.Check(true, () => "");

        await Task.WhenAll(_clients.Select(c => c.StopAsync()));
        for (var i = _servers.Count - 1; i >= 0; i--) await _servers[i].StopAsync();
        await Task.WhenAll(_abandoned);
    }

    /// <summary>Halfway through, one client fires more requests at once than the gateways' buckets hold.</summary>
    private async Task RateLimitProbeAsync(DateTimeOffset end, CancellationToken ct)
    {
        var clock = Executor.Clock;
        await Task.Delay((end - clock.GetUtcNow()) / 2, clock, ct);
        var quota = new AuthQuota();
        // Each gateway keeps its own bucket per key; a bucket refills during the burst by at most one.
        var allowed = _settings.Gateways * ((int)quota.Burst + 1);
        await _clients[0].RateLimitProbeAsync(allowed + 5, allowed, ct);
    }

    private static string Name(string role, int number) => role + "-" + number.ToString(CultureInfo.InvariantCulture);
}
