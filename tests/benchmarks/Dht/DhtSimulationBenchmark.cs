using System.Diagnostics;
using System.Globalization;
using System.Text;
using P2PInference.Tests.Integration.Dht.Simulation;

namespace P2PInference.Benchmarks.Dht;

/// <summary>
/// The Kademlia simulation (tests/integration/Dht/Simulation, linked in) at growing sizes: real hosts
/// over the in-memory network on fake time; bootstrap from 3 seeds, 50 topics with 2 providers each,
/// lookups from random peers, then 20% of the peers crash, fake time passes one refresh and
/// re-announce, and the lookups run again.
/// </summary>
/// <remarks>
/// Arguments: <c>--peers 1000,10000</c> (sizes), <c>--lookups 200</c>, <c>--seed 1</c>,
/// <c>--budget-minutes 20</c> (wall time per size; a size whose bootstrap runs out of it reports how
/// many peers had joined, which is the practical limit on this machine).
/// </remarks>
public static class DhtSimulationBenchmark
{
    public static async Task<string> RunAsync(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var sizes = Option(args, "--peers", "1000,10000").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        var lookups = int.Parse(Option(args, "--lookups", "200"), CultureInfo.InvariantCulture);
        var seed = int.Parse(Option(args, "--seed", "1"), CultureInfo.InvariantCulture);
        var budget = TimeSpan.FromMinutes(double.Parse(Option(args, "--budget-minutes", "20"), CultureInfo.InvariantCulture));

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"Kademlia simulation (k=20, alpha=10, 3 seeds, 50 topics x 2 providers, seed {seed}, {Environment.ProcessorCount} cores)");
        table.AppendLine(CultureInfo.InvariantCulture,
            $"{"peers",6} {"phase",-14} {"bootstrap s",11} {"lookups",7} {"success",8} {"hops mean",9} {"p95",4} {"max",4} {"to-result",9} {"msgs mean",9} {"p95",4} {"wall s",7} {"CPU s",7} {"heap MiB",8} {"peak RSS MiB",12}");
        foreach (var peers in sizes)
        {
            await RunSizeAsync(peers, lookups, seed, budget, table).ConfigureAwait(false);
        }

        return table.ToString();
    }

    private static async Task RunSizeAsync(int peers, int lookups, int seed, TimeSpan budget, StringBuilder table)
    {
        GC.Collect();
        var wall = Stopwatch.StartNew();
        var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        using var limit = new CancellationTokenSource(budget);
        // Every connection open (~55 per peer) fits in memory at 1,000 peers, not at 10,000: close idle ones there.
        var idle = peers > 2_000 ? TimeSpan.FromMinutes(2) : new DhtSimulationOptions().IdleConnectionTimeout;
        var sim = DhtSimulation.Create(new DhtSimulationOptions { Peers = peers, SeedPeers = 3, Topics = 50, ProvidersPerTopic = 2, Seed = seed, IdleConnectionTimeout = idle });
        try
        {
            try
            {
                await sim.BootstrapAsync(limit.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (limit.IsCancellationRequested)
            {
                table.AppendLine(CultureInfo.InvariantCulture,
                    $"{peers,6} {"bootstrap",-14} stopped at the {budget.TotalMinutes} min budget after {sim.Joined} peers joined ({sim.Joined / wall.Elapsed.TotalSeconds:F1} joins/s){Resources()}");
                return;
            }

            var bootstrap = wall.Elapsed;
            await sim.AnnounceAsync(CancellationToken.None).ConfigureAwait(false);
            Row("healthy", await sim.LookupAsync(lookups, CancellationToken.None).ConfigureAwait(false));
            await sim.CrashAsync(0.2).ConfigureAwait(false);
            await sim.AdvanceAsync(TimeSpan.FromMinutes(31), CancellationToken.None).ConfigureAwait(false);
            Row("20% crashed", await sim.LookupAsync(lookups, CancellationToken.None).ConfigureAwait(false));

            void Row(string phase, LookupReport r) => table.AppendLine(CultureInfo.InvariantCulture,
                $"{peers,6} {phase,-14} {bootstrap.TotalSeconds,11:F1} {r.Count,7} {r.SuccessRate,8:P1} {r.Hops.Mean,9:F2} {r.Hops.P95,4} {r.Hops.Max,4} {r.HopsToResult.Mean,9:F2} {r.Requests.Mean,9:F1} {r.Requests.P95,4}{Resources()}");
        }
        finally
        {
            await sim.DisposeAsync().ConfigureAwait(false);
        }

        string Resources()
        {
            process.Refresh();
            return string.Create(CultureInfo.InvariantCulture,
                $" {wall.Elapsed.TotalSeconds,7:F1} {(process.TotalProcessorTime - cpu).TotalSeconds,7:F1} {GC.GetTotalMemory(false) >> 20,8} {process.PeakWorkingSet64 >> 20,12}");
        }
    }

    private static string Option(string[] args, string name, string fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }
}
