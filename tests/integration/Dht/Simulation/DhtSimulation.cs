using System.Diagnostics;
using System.Globalization;
using System.Text;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Dht.Simulation;

/// <summary>
/// A whole Kademlia network in one process: N real hosts (plaintext, Yamux, identify, kad) over the
/// in-memory network, run on a <see cref="SimulationExecutor"/>. Shared by the simulation tests and
/// the benchmark (linked into tests/benchmarks), so it uses no test framework; create and drive it
/// from inside the executor's run.
/// </summary>
/// <remarks>
/// <para>
/// The links have no latency: a request completes without virtual time moving, so bootstrap and
/// lookups run at CPU speed while the clock stands still. Time moves in <see cref="AdvanceAsync"/>
/// and between joins and lookups, and the executor fires each timer due on the way (refresh,
/// re-announce, sweep, idle connections) and runs the work it starts before moving on.
/// </para>
/// <para>
/// Every random choice comes from the executor's seed, each from its own stream: the plan (who
/// provides what, who looks up what, who crashes), each node's identity, its DHT choices and its
/// host's random bytes, keyed by the node's name; link randomness is keyed by the link. With the
/// executor deciding the order of every step, a seed replays the run exactly, per-lookup results
/// and trace hash included.
/// </para>
/// </remarks>
public sealed class DhtSimulation : IAsyncDisposable
{
    private readonly DhtSimulationOptions _options;
    private readonly SimulationExecutor _sim;
    private readonly Random _plan;
    private readonly List<Node> _nodes = [];
    private readonly Dictionary<string, List<Node>> _providers = new(StringComparer.Ordinal);

    private DhtSimulation(SimulationExecutor sim, DhtSimulationOptions options)
    {
        _options = options;
        _sim = sim;
        _plan = sim.CreateRandom("dht-simulation", "plan");
        Network = new InMemoryNetwork(sim.Clock, sim.Seed);
    }

    public SimulationClock Time => _sim.Clock;

    /// <summary>Peers started so far (a bootstrap stopped by its wall budget leaves fewer than asked for).</summary>
    public int Joined { get; private set; }
    public InMemoryNetwork Network { get; }
    public int LiveCount => _nodes.Count(n => !n.Crashed);
    public IReadOnlyCollection<string> Topics => _providers.Keys;

    /// <summary>Kad requests sent so far by every node, crashed ones included.</summary>
    public long RequestsSent => _nodes.Sum(n => n.Dht.RequestsSent);

    /// <summary>Average routing-table size over the live nodes.</summary>
    public double MeanRoutingTableSize => _nodes.Where(n => !n.Crashed).Average(n => n.Dht.RoutingTable.Count);

    /// <summary>Creates the simulation (no node started yet) on <paramref name="sim"/>, whose seed decides everything.</summary>
    public static DhtSimulation Create(SimulationExecutor sim, DhtSimulationOptions options)
    {
        ArgumentNullException.ThrowIfNull(sim);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Peers, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SeedPeers, 1);
        return new DhtSimulation(sim, options);
    }

    /// <summary>
    /// Starts the seed peers (each bootstrapping from the ones before it), then every other peer,
    /// one at a time, bootstrapping from the seeds: connect, self lookup, timers. Stops early, with
    /// false, when <see cref="DhtSimulationOptions.WallBudget"/> runs out.
    /// </summary>
    public async Task<bool> BootstrapAsync(CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var seeds = new List<Node>();
        for (var i = 0; i < _options.Peers; i++)
        {
            if (_options.WallBudget is { } budget && Stopwatch.GetElapsedTime(started) > budget) return false;
            var node = await StartNodeAsync($"peer-{i}", SeedAddresses(seeds), cancellationToken);
            Joined = i + 1;
            if (i < _options.SeedPeers) seeds.Add(node);
            await Time.AdvanceAsync(_options.JoinInterval);
        }
        return true;
    }

    private static Facilities.Addressing.Multiaddress[] SeedAddresses(List<Node> seeds) =>
        seeds.Select(s => s.Host.AdvertisedAddresses[0]).ToArray();

    private Task<Node> StartNodeAsync(string name, IReadOnlyList<Facilities.Addressing.Multiaddress> bootstrap, CancellationToken cancellationToken) =>
        // The trace records which node each step belongs to.
        SimulationExecutor.InNode(name, async () =>
        {
            var host = new P2PHost(new HostOptions
            {
                Identity = KeyPair.FromRandom(_sim.CreateRandom("dht-simulation", "identity", name)),
                Transports = [Network.CreateTransport(name)],
                TimeProvider = Time,
                RandomSource = new SeededRandomSource(_sim.CreateRandom("dht-simulation", "host", name)),
                // The simulation is about Kademlia routing, not crypto: the Noise handshake (X25519, Ed25519
                // sign and verify) was most of the CPU a new connection cost. Plaintext still exchanges and
                // checks peer ids, so every host keeps the identities the routing depends on.
                SecurityProtocols = [PlaintextHandshake.ProtocolId],
                // Keep-alive pings would only add traffic: a crash resets connections at once in memory.
                // Window auto-tuning would send an RTT ping on every new connection; kad messages are tiny.
                Yamux = new YamuxOptions { TimeProvider = Time, KeepAliveInterval = null, MaxStreamWindowSize = YamuxOptions.DefaultWindowSize },
                IdleConnectionTimeout = _options.IdleConnectionTimeout,
                MaintenanceInterval = _options.IdleConnectionTimeout / 2,
            });
            await host.StartAsync([InMemoryNetwork.AddressOf(name)], cancellationToken);
            var dht = new KademliaDht(host, new KademliaDhtOptions
            {
                TimeProvider = Time,
                K = _options.K,
                Alpha = _options.Alpha,
                BootstrapPeers = bootstrap,
                ProviderRecordTtl = _options.ProviderRecordTtl,
                ReannounceInterval = _options.ReannounceInterval,
                RefreshInterval = _options.RefreshInterval,
                SweepInterval = _options.ReannounceInterval,
                QueryTimeout = TimeSpan.FromSeconds(10),
                LookupTimeout = TimeSpan.FromMinutes(1),
                RandomSeed = _sim.CreateRandom("dht-simulation", "dht", name).Next(),
            });
            var node = new Node(name, host, dht);
            _nodes.Add(node);
            await dht.StartAsync(cancellationToken);
            return node;
        });

    /// <summary>
    /// <see cref="DhtSimulationOptions.Topics"/> topics, each announced by
    /// <see cref="DhtSimulationOptions.ProvidersPerTopic"/> distinct random non-seed peers.
    /// </summary>
    public async Task AnnounceAsync(CancellationToken cancellationToken)
    {
        var candidates = _nodes.Skip(_options.SeedPeers).Where(n => !n.Crashed).ToList();
        for (var t = 0; t < _options.Topics; t++)
        {
            var topic = $"p2pinference/simulation/topic-{t}";
            var providers = new List<Node>();
            while (providers.Count < _options.ProvidersPerTopic)
            {
                var node = candidates[_plan.Next(candidates.Count)];
                if (!providers.Contains(node)) providers.Add(node);
            }
            _providers[topic] = providers;
            foreach (var provider in providers) await provider.Dht.AnnounceAsync(topic, cancellationToken);
            await Time.AdvanceAsync(_options.JoinInterval);
        }
    }

    /// <summary>
    /// <paramref name="count"/> lookups, one at a time, each from a random live peer for a random
    /// topic that has a live provider. A lookup succeeds when it finds every live provider of its topic.
    /// </summary>
    public async Task<LookupReport> LookupAsync(int count, CancellationToken cancellationToken)
    {
        var live = _nodes.Where(n => !n.Crashed).ToList();
        var topics = _providers.Where(p => p.Value.Any(n => !n.Crashed)).Select(p => p.Key).Order(StringComparer.Ordinal).ToList();
        var samples = new List<LookupSample>(count);
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < count; i++)
        {
            var topic = topics[_plan.Next(topics.Count)];
            var from = live[_plan.Next(live.Count)];
            var result = await from.Dht.FindProvidersAsync(TopicKey.For(topic), cancellationToken);
            var found = result.Providers.Select(p => p.PeerId).ToHashSet();
            var success = _providers[topic].Where(n => !n.Crashed && n != from).All(n => found.Contains(n.Host.PeerId));
            var stats = result.Stats;
            samples.Add(new LookupSample(from.Name, topic, success, stats.Hops, stats.HopsToResult, stats.RequestsSent, stats.Failures,
                stats.Responses, stats.PeersSeen, string.Join(' ', result.Providers.Select(p => p.PeerId.ToString()))));
            await Time.AdvanceAsync(_options.JoinInterval);
        }
        return new LookupReport(samples, Stopwatch.GetElapsedTime(started));
    }

    /// <summary>
    /// Crashes a random <paramref name="fraction"/> of the peers, seeds and providers included, but
    /// never every provider of a topic: no goodbye, connections reset, records left behind.
    /// </summary>
    public async Task CrashAsync(double fraction)
    {
        var target = (int)Math.Round(_nodes.Count * fraction);
        var crashed = 0;
        while (crashed < target)
        {
            var node = _nodes[_plan.Next(_nodes.Count)];
            if (node.Crashed) continue;
            if (_providers.Values.Any(p => p.Contains(node) && p.All(n => n == node || n.Crashed))) continue;
            node.Crashed = true;
            Network.Crash(node.Name);
            crashed++;
        }
        // The processes are gone: their timers (re-announce, refresh) must not run again.
        foreach (var node in _nodes.Where(n => n.Crashed && !n.Disposed))
        {
            node.Disposed = true;
            await node.Dht.DisposeAsync();
            await node.Host.DisposeAsync();
        }
    }

    /// <summary>The peers that crashed, by name.</summary>
    public IReadOnlyList<string> CrashedPeers => _nodes.Where(n => n.Crashed).Select(n => n.Name).ToArray();

    /// <summary>
    /// Moves virtual time by <paramref name="delta"/>: every refresh and re-announce round that comes
    /// due on the way runs, with all the work it starts, before the clock moves past it. Idle
    /// connections close as time passes.
    /// </summary>
    public Task AdvanceAsync(TimeSpan delta) => Time.AdvanceAsync(delta);

    /// <summary>
    /// Ends the run the way the processes of a whole network end together: each DHT stops (no more
    /// refresh or re-announce timers), and the hosts and their connections are left to the
    /// executor, which drops them with the run, as a network switched off drops its sockets.
    /// </summary>
    /// <remarks>
    /// Closing every connection gracefully is not what the simulation measures and cost about a tenth
    /// of its wall time: ~36,000 connections at 1,000 peers, each side's read loop, accept loop and
    /// stream reads ending in a cancellation exception rethrown through every async frame on the way
    /// (~7 throws per side). Hosts that crashed were disposed when they crashed.
    /// </remarks>
    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes.Where(n => !n.Disposed))
        {
            node.Disposed = true;
            await node.Dht.DisposeAsync();
        }
        _nodes.Clear();
    }

    private sealed class Node(string name, P2PHost host, KademliaDht dht)
    {
        public string Name { get; } = name;
        public P2PHost Host { get; } = host;
        public KademliaDht Dht { get; } = dht;
        public bool Crashed { get; set; }
        public bool Disposed { get; set; }
    }
}

/// <summary>What <see cref="DhtSimulation"/> builds.</summary>
public sealed class DhtSimulationOptions
{
    public int Peers { get; init; } = 1000;
    public int SeedPeers { get; init; } = 3;
    public int Topics { get; init; } = 50;
    public int ProvidersPerTopic { get; init; } = 2;
    public int K { get; init; } = 20;
    public int Alpha { get; init; } = 10;
    public TimeSpan ProviderRecordTtl { get; init; } = TimeSpan.FromHours(1);
    public TimeSpan ReannounceInterval { get; init; } = TimeSpan.FromMinutes(30);
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(30);
    // Connections stay open for the whole run (~33 KiB each since Yamux rents its buffers): an idle
    // close racing an ADD_PROVIDER on the reused connection would silently lose the record.
    public TimeSpan IdleConnectionTimeout { get; init; } = TimeSpan.FromDays(1);
    public TimeSpan JoinInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Wall time the bootstrap may take before it stops (the benchmark's practical limit on a size); null for no limit.</summary>
    public TimeSpan? WallBudget { get; init; }
}

/// <summary>One lookup: whether it found every live provider, which it found (in the order returned), and what it cost.</summary>
public readonly record struct LookupSample(string From, string Topic, bool Success, int Hops, int HopsToResult, int Requests, int Failures,
    int Responses, int PeersSeen, string ProvidersFound);

/// <summary>A batch of lookups and its statistics.</summary>
public sealed record LookupReport(IReadOnlyList<LookupSample> Samples, TimeSpan WallTime)
{
    public int Count => Samples.Count;
    public int Successes => Samples.Count(s => s.Success);
    public double SuccessRate => Count == 0 ? 0 : (double)Successes / Count;
    public Distribution Hops => Distribution.Of(Samples.Select(s => s.Hops));
    public Distribution HopsToResult => Distribution.Of(Samples.Select(s => s.HopsToResult));
    public Distribution Requests => Distribution.Of(Samples.Select(s => s.Requests));
    public Distribution Failures => Distribution.Of(Samples.Select(s => s.Failures));

    public string Format(string title)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"{title}: {Successes}/{Count} lookups succeeded ({SuccessRate:P1}), {WallTime.TotalSeconds:F1} s wall");
        text.AppendLine(CultureInfo.InvariantCulture, $"  {"",-26} {"mean",7} {"p50",5} {"p95",5} {"max",5}");
        foreach (var (name, d) in new[] { ("hops to first provider", HopsToResult), ("hops (lookup depth)", Hops), ("requests per lookup", Requests), ("failed requests", Failures) })
            text.AppendLine(CultureInfo.InvariantCulture, $"  {name,-26} {d.Mean,7:F2} {d.P50,5} {d.P95,5} {d.Max,5}");
        return text.ToString();
    }
}

/// <summary>Mean and nearest-rank percentiles of integer samples.</summary>
public readonly record struct Distribution(double Mean, int P50, int P95, int Max)
{
    public static Distribution Of(IEnumerable<int> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return default;
        return new Distribution(sorted.Average(), Percentile(sorted, 0.50), Percentile(sorted, 0.95), sorted[^1]);
    }

    private static int Percentile(int[] sorted, double p) => sorted[Math.Max(0, (int)Math.Ceiling(p * sorted.Length) - 1)];
}
