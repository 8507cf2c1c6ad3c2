using System.Diagnostics;
using System.Globalization;
using System.Text;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Simulation;
using P2PInference.Tests.Integration.Dht.Simulation;

namespace P2PInference.Benchmarks.Dht;

/// <summary>
/// The Kademlia simulation (tests/integration/Dht/Simulation, linked in) at growing sizes, on the
/// simulation executor: bootstrap from 3 seeds, 50 topics with 2 providers each, lookups from random
/// peers, then 20% of the peers crash, 31 virtual minutes pass (one refresh and re-announce), and the
/// lookups run again. Reports the time compression (virtual seconds per wall second) and memory,
/// and, cumulative, connections ever opened, kad requests sent and exceptions thrown (each rethrow
/// through an async frame counts): what the run's time is spent on.
/// </summary>
/// <remarks>
/// Arguments: <c>--peers 1000,10000</c> (sizes; 0 for none: peak memory is the process's, so a
/// size measured alone shows its own), <c>--lookups 200</c>, <c>--seed 1</c>,
/// <c>--budget-minutes 10</c> (wall time of a size's bootstrap; one that runs out of it reports how
/// many peers had joined, which is the practical limit on this machine), <c>--simulate-minutes 1</c>
/// (virtual minutes of the <c>p2pinference simulate</c> row, 4 gateways, 50 processors and 200 clients
/// on the real stack with Noise; 0 leaves the row out).
/// </remarks>
public static class DhtSimulationBenchmark
{
    public static string Run(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var sizes = Option(args, "--peers", "1000,10000").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).Where(n => n > 0).ToArray();
        var lookups = int.Parse(Option(args, "--lookups", "200"), CultureInfo.InvariantCulture);
        var seed = int.Parse(Option(args, "--seed", "1"), CultureInfo.InvariantCulture);
        var budget = TimeSpan.FromMinutes(double.Parse(Option(args, "--budget-minutes", "10"), CultureInfo.InvariantCulture));
        var simulateMinutes = double.Parse(Option(args, "--simulate-minutes", "1"), CultureInfo.InvariantCulture);

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"Kademlia simulation on the executor (k=20, alpha=10, 3 seeds, 50 topics x 2 providers, seed {seed}, {Environment.ProcessorCount} cores)");
        table.AppendLine(CultureInfo.InvariantCulture,
            $"{"peers",6} {"phase",-12} {"lookups ok",10} {"hops mean",9} {"max",4} {"msgs mean",9} {"wall s",7} {"virtual s",9} {"virt/wall",9} {"CPU s",7} {"heap MiB",8} {"peak WS MiB",11} {"GCs 0/1/2",14} {"GC pause s",10} {"alloc GiB",9} {"conns",7} {"kad reqs",8} {"exceptions",10} {"trace",16}");
        foreach (var peers in sizes)
        {
            RunSize(peers, lookups, seed, budget, table);
            Console.Error.Write(table.ToString());
        }

        if (simulateMinutes > 0) RunSimulate(seed, TimeSpan.FromMinutes(simulateMinutes), table);
        return table.ToString();
    }

    /// <summary>The same measures for <c>p2pinference simulate</c> at 4 gateways, 50 processors and 200 clients.</summary>
    private static void RunSimulate(int seed, TimeSpan virtualDuration, StringBuilder table)
    {
        GC.Collect();
        using var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var gcPause = GC.GetTotalPauseDuration();
        var report = NetworkSimulation.Run(new SimulationSettings
        {
            Seed = seed, Processors = 50, Gateways = 4, Clients = 200, VirtualDuration = virtualDuration,
        });
        process.Refresh();
        var invariants = report.Ok ? "all invariants hold" : "FAILED: " + string.Join(", ", report.Invariants.Where(i => !i.Ok).Select(i => i.Name));
        table.AppendLine();
        table.AppendLine(CultureInfo.InvariantCulture,
            $"p2pinference simulate, 4 gateways, 50 processors, 200 clients (real stack, Noise), seed {seed}: {invariants}");
        table.AppendLine(CultureInfo.InvariantCulture,
            $"{"wall s",7} {"virtual s",9} {"virt/wall",9} {"CPU s",7} {"peak WS MiB",11} {"GC pause s",10} {"steps",10} {"trace",16}");
        table.AppendLine(CultureInfo.InvariantCulture,
            $"{report.WallTime.TotalSeconds,7:F1} {report.VirtualTime.TotalSeconds,9:F0} {report.Compression,9:F1} {(process.TotalProcessorTime - cpu).TotalSeconds,7:F1} {process.PeakWorkingSet64 >> 20,11} {(GC.GetTotalPauseDuration() - gcPause).TotalSeconds,10:F1} {report.Steps,10} {report.TraceHash,16:x16}");
    }

    private static void RunSize(int peers, int lookups, int seed, TimeSpan budget, StringBuilder table)
    {
        GC.Collect();
        using var process = Process.GetCurrentProcess();
        var wall = Stopwatch.StartNew();
        var cpu = process.TotalProcessorTime;
        var gcPause = GC.GetTotalPauseDuration();
        int[] gcCounts = [GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2)];
        var allocated = GC.GetTotalAllocatedBytes(precise: true);
        // Every connection open (~55 per peer) fits in memory at 1,000 peers, not at 10,000: close idle ones there.
        var idle = peers > 2_000 ? TimeSpan.FromMinutes(2) : new DhtSimulationOptions().IdleConnectionTimeout;
        var sim = new SimulationExecutor(new SimulationOptions { Seed = seed, MaxVirtualTime = TimeSpan.FromDays(2) });
        long requests = 0;
        var lookupsOk = 0;
        var lookupsRun = 0;
        // Thrown exceptions cost CPU and allocation; counting them shows where failures, not work, take the time.
        long exceptions = 0;
        EventHandler<System.Runtime.ExceptionServices.FirstChanceExceptionEventArgs> countException = (_, _) => Interlocked.Increment(ref exceptions);
        AppDomain.CurrentDomain.FirstChanceException += countException;
        DhtSimulation? current = null;
        P2PInference.TestKit.Network.InMemoryNetwork? network = null;
        sim.Run(async () =>
        {
            await using var dht = current = DhtSimulation.Create(sim, new DhtSimulationOptions
            {
                Peers = peers, SeedPeers = 3, Topics = 50, ProvidersPerTopic = 2, IdleConnectionTimeout = idle, WallBudget = budget,
            });
            if (!await dht.BootstrapAsync(CancellationToken.None))
            {
                table.AppendLine(CultureInfo.InvariantCulture,
                    $"{peers,6} {"bootstrap",-12} stopped at the {budget.TotalMinutes} min budget after {dht.Joined} peers joined ({dht.Joined / wall.Elapsed.TotalSeconds:F1} joins/s){Resources()}");
                return;
            }
            Row("bootstrap", null);
            // What the network holds, garbage aside: one full collection, outside the timed phases' GC figures.
            var pauseBefore = GC.GetTotalPauseDuration();
            var live = GC.GetTotalMemory(forceFullCollection: true);
            gcPause += GC.GetTotalPauseDuration() - pauseBefore;
            table.AppendLine(CultureInfo.InvariantCulture,
                $"{peers,6} {"live after bootstrap",-20} {live >> 20} MiB, {live / peers / 1024.0:F1} KiB per peer, {dht.Network.ConnectionCount} connections open ({live / Math.Max(1, dht.Network.ConnectionCount) / 1024.0:F1} KiB each)");
            await dht.AnnounceAsync(CancellationToken.None);
            Row("healthy", await dht.LookupAsync(lookups, CancellationToken.None));
            await dht.CrashAsync(0.2);
            await dht.AdvanceAsync(TimeSpan.FromMinutes(31));
            Row("20% crashed", await dht.LookupAsync(lookups, CancellationToken.None));
            requests = dht.RequestsSent;
            current = null;
            network = dht.Network;
        });
        AppDomain.CurrentDomain.FirstChanceException -= countException;
        table.AppendLine(CultureInfo.InvariantCulture,
            $"{peers,6} {"total",-12} {$"{lookupsOk}/{lookupsRun}",10} {"",9} {"",4} {"",9}{Resources()}");

        void Row(string phase, LookupReport? r)
        {
            lookupsOk += r?.Successes ?? 0;
            lookupsRun += r?.Count ?? 0;
            if (r is null)
                table.AppendLine(CultureInfo.InvariantCulture, $"{peers,6} {phase,-12} {"",10} {"",9} {"",4} {"",9}{Resources()}");
            else
                table.AppendLine(CultureInfo.InvariantCulture,
                    $"{peers,6} {phase,-12} {$"{r.Successes}/{r.Count}",10} {r.Hops.Mean,9:F2} {r.Hops.Max,4} {r.Requests.Mean,9:F1}{Resources()}");
        }

        string Resources()
        {
            process.Refresh();
            var virtualSeconds = sim.Clock.Elapsed.TotalSeconds;
            var wallSeconds = wall.Elapsed.TotalSeconds;
            return string.Create(CultureInfo.InvariantCulture,
                $" {wallSeconds,7:F1} {virtualSeconds,9:F0} {virtualSeconds / wallSeconds,9:F1} {(process.TotalProcessorTime - cpu).TotalSeconds,7:F1} {GC.GetTotalMemory(false) >> 20,8} {process.PeakWorkingSet64 >> 20,11} {$"{GC.CollectionCount(0) - gcCounts[0]}/{GC.CollectionCount(1) - gcCounts[1]}/{GC.CollectionCount(2) - gcCounts[2]}",14} {(GC.GetTotalPauseDuration() - gcPause).TotalSeconds,10:F1} {(GC.GetTotalAllocatedBytes(precise: true) - allocated) / (double)(1 << 30),9:F1} {(current?.Network ?? network)?.ConnectionsOpened,7} {current?.RequestsSent ?? requests,8} {Interlocked.Read(ref exceptions),10} {sim.TraceHash,16:x16}");
        }
    }

    private static string Option(string[] args, string name, string fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }
}
