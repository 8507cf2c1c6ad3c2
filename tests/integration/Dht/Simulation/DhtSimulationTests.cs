using System.Diagnostics;
using P2PInference.TestKit;

namespace P2PInference.Tests.Integration.Dht.Simulation;

/// <summary>
/// Kademlia at scale: a network of real hosts over the in-memory network on fake time (see
/// <see cref="DhtSimulation"/>). Reports what lookups cost; asserts only what a user notices:
/// every lookup of a topic finds every live provider, before and after a fifth of the peers crash.
/// </summary>
[TestFixture]
public sealed class DhtSimulationTests
{
    private static readonly TimeSpan PastRefreshAndReannounce = TimeSpan.FromMinutes(31);

    [Test]
    [CancelAfter(300_000)]
    public async Task Lookups_FindEveryLiveProvider_InThousandPeers_BeforeAndAfterAFifthCrash(CancellationToken ct)
    {
        var wall = Stopwatch.StartNew();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        await using var sim = DhtSimulation.Create(new DhtSimulationOptions { Peers = 1000, SeedPeers = 3, Topics = 50, ProvidersPerTopic = 2, Seed = TestSeed.Choose() });

        await sim.BootstrapAsync(ct);
        Report($"bootstrap of 1000 peers: mean routing table {sim.MeanRoutingTableSize:F1} peers");
        await sim.AnnounceAsync(ct);
        Report("50 topics announced by 2 peers each");
        var healthy = await sim.LookupAsync(100, ct);
        TestContext.Out.WriteLine(healthy.Format("healthy network"));

        await sim.CrashAsync(0.2);
        await sim.AdvanceAsync(PastRefreshAndReannounce, ct);
        Report($"200 peers crashed, {PastRefreshAndReannounce.TotalMinutes} virtual minutes later (refresh and re-announce ran): mean routing table {sim.MeanRoutingTableSize:F1}");
        var healed = await sim.LookupAsync(100, ct);
        TestContext.Out.WriteLine(healed.Format("after 20% crashed"));
        Report("done");

        Assert.That(healthy.Successes, Is.EqualTo(healthy.Count), "every lookup in the healthy network finds every provider");
        Assert.That(healed.Successes, Is.EqualTo(healed.Count), "every lookup after the crash finds every live provider");

        void Report(string phase) => TestContext.Out.WriteLine(
            $"[{wall.Elapsed.TotalSeconds,6:F1} s wall, {(Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds,6:F1} s CPU, " +
            $"{GC.GetTotalMemory(false) >> 20} MiB heap, {sim.Network.ConnectionCount} connections open] {phase}");
    }

    /// <summary>
    /// Same seed, same simulation: identities, who provides what, which peer looks up which topic,
    /// who crashes, and whether each lookup succeeded are identical. The cost of a lookup (hops,
    /// requests) also depends on the order in which its α concurrent replies arrive, which the thread
    /// pool decides, so those are printed for both runs, not compared.
    /// </summary>
    [Test]
    [CancelAfter(600_000)]
    public async Task Simulation_RepeatsItsPlanAndOutcome_WithTheSameSeed(CancellationToken ct)
    {
        var seed = TestSeed.Choose();
        var first = await RunSmallAsync(seed, ct);
        var second = await RunSmallAsync(seed, ct);

        Assert.That(second.Crashed, Is.EqualTo(first.Crashed), "the same peers crash");
        Assert.That(Plan(second.Healthy), Is.EqualTo(Plan(first.Healthy)), "the same lookups, with the same outcome, in the healthy network");
        Assert.That(Plan(second.Healed), Is.EqualTo(Plan(first.Healed)), "the same lookups, with the same outcome, after the crash");
        Assert.That(first.Healthy.SuccessRate, Is.EqualTo(1.0));
        Assert.That(first.Healed.SuccessRate, Is.EqualTo(1.0));

        static string[] Plan(LookupReport report) => [.. report.Samples.Select(s => $"{s.From} {s.Topic} {s.Success}")];
    }

    private static async Task<(LookupReport Healthy, LookupReport Healed, IReadOnlyList<string> Crashed)> RunSmallAsync(int seed, CancellationToken ct)
    {
        await using var sim = DhtSimulation.Create(new DhtSimulationOptions { Peers = 100, SeedPeers = 3, Topics = 10, ProvidersPerTopic = 2, Seed = seed });
        await sim.BootstrapAsync(ct);
        await sim.AnnounceAsync(ct);
        var healthy = await sim.LookupAsync(30, ct);
        await sim.CrashAsync(0.2);
        await sim.AdvanceAsync(PastRefreshAndReannounce, ct);
        var healed = await sim.LookupAsync(30, ct);
        TestContext.Out.WriteLine(healthy.Format("100 peers, healthy"));
        TestContext.Out.WriteLine(healed.Format("100 peers, after 20% crashed"));
        return (healthy, healed, sim.CrashedPeers);
    }
}
