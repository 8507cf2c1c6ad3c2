using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Workers.Simulation;

/// <summary>
/// Injects the chosen faults into a <see cref="NetworkSimulation"/> at seeded times: one every 20–60 s of
/// virtual time, each undone 5–30 s later (a crashed node restarts, a partition heals, a slow node's links
/// recover); a clock skew stays until <see cref="HealAllAsync"/>. The bootstrap node is spared, so new
/// nodes can always join.
/// </summary>
internal sealed class SimulationFaultPlan(NetworkSimulation simulation, SimulationFaults faults)
{
    private static readonly TimeSpan BaseLatency = TimeSpan.FromMilliseconds(2);
    private static readonly TimeSpan BaseJitter = TimeSpan.FromMilliseconds(1);

    private readonly Random _random = simulation.Executor.CreateRandom("faults");
    private readonly Dictionary<string, int> _injected = new(StringComparer.Ordinal);
    private readonly List<Task> _recoveries = [];
    private readonly HashSet<string> _faulted = new(StringComparer.Ordinal);

    /// <summary>Faults injected so far, by kind.</summary>
    public IReadOnlyDictionary<string, int> Injected => _injected;

    /// <summary>The base link quality of the network (also what a latency fault recovers to).</summary>
    public static void ConfigureBaseLinks(InMemoryNetwork network) => network.ConfigureLinks(link =>
    {
        link.Latency = BaseLatency;
        link.Jitter = BaseJitter;
    });

    public async Task RunAsync(DateTimeOffset until, CancellationToken cancellationToken)
    {
        var kinds = Enum.GetValues<SimulationFaults>().Where(f => f != SimulationFaults.None && faults.HasFlag(f)).ToArray();
        if (kinds.Length == 0) return;
        var clock = simulation.Executor.Clock;
        while (true)
        {
            await Task.Delay(TimeSpan.FromSeconds(_random.Next(20, 61)), clock, cancellationToken);
            if (clock.GetUtcNow() >= until) return;
            var candidates = simulation.Servers.Where(n => n.Role != "bootstrap" && !_faulted.Contains(n.Name)).ToArray();
            if (candidates.Length == 0) continue;
            var victim = candidates[_random.Next(candidates.Length)];
            var kind = kinds[_random.Next(kinds.Length)];
            var duration = TimeSpan.FromSeconds(_random.Next(5, 31));
            switch (kind)
            {
                case SimulationFaults.Crash:
                    await victim.CrashAsync();
                    Recover(victim, duration, () => victim.StartAsync(cancellationToken));
                    break;
                case SimulationFaults.Partition:
                    var others = simulation.AllNodeNames.Where(n => n != victim.Name).ToArray();
                    // Half isolate the node from everyone, half cut it from one other node only.
                    var side = _random.Next(2) == 0 ? others : [others[_random.Next(others.Length)]];
                    var mode = _random.Next(2) == 0 ? PartitionMode.Stall : PartitionMode.Reset;
                    var partition = simulation.Network.Partition([victim.Name], side, mode);
                    Recover(victim, duration, () =>
                    {
                        partition.Heal();
                        return Task.CompletedTask;
                    });
                    break;
                case SimulationFaults.Latency:
                    var latency = TimeSpan.FromMilliseconds(_random.Next(50, 501));
                    SetLinks(victim.Name, latency, latency / 2);
                    Recover(victim, duration, () =>
                    {
                        SetLinks(victim.Name, BaseLatency, BaseJitter);
                        return Task.CompletedTask;
                    });
                    break;
                case SimulationFaults.Skew:
                    victim.Clock.Offset = TimeSpan.FromSeconds(_random.Next(-20, 21));
                    victim.Clock.Drift = (_random.NextDouble() * 2 - 1) * 1e-3;
                    break;
            }
            _injected[kind.ToString().ToLowerInvariant()] = _injected.GetValueOrDefault(kind.ToString().ToLowerInvariant()) + 1;
        }
    }

    /// <summary>Undoes every fault still in force: pending recoveries finish, skewed clocks are set right.</summary>
    public async Task HealAllAsync()
    {
        await Task.WhenAll(_recoveries);
        simulation.Network.Heal();
        foreach (var node in simulation.Servers)
        {
            node.Clock.Offset = TimeSpan.Zero;
            node.Clock.Drift = 0;
            if (!node.IsUp) await node.StartAsync(CancellationToken.None);
        }
    }

    private void Recover(SimulatedNode victim, TimeSpan after, Func<Task> recover)
    {
        _faulted.Add(victim.Name);
        _recoveries.Add(RecoverAsync());

        async Task RecoverAsync()
        {
            await Task.Delay(after, simulation.Executor.Clock);
            try
            {
                await recover();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A restart that fails (its network still settling) leaves the node down; HealAllAsync tries again.
                simulation.Count("restart", "failed:" + e.GetType().Name);
            }
            _faulted.Remove(victim.Name);
        }
    }

    private void SetLinks(string node, TimeSpan latency, TimeSpan jitter)
    {
        foreach (var other in simulation.AllNodeNames)
        {
            if (other == node) continue;
            foreach (var link in new[] { simulation.Network.Link(node, other), simulation.Network.Link(other, node) })
            {
                link.Latency = latency;
                link.Jitter = jitter;
            }
        }
    }
}
