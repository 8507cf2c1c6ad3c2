using System.Diagnostics;
using P2PInference.TestKit;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Dht.Simulation;

/// <summary>
/// Kademlia at scale: a network of real hosts over the in-memory network on the simulation executor
/// (see <see cref="DhtSimulation"/>). Reports what lookups cost; asserts what a user notices: every
/// lookup of a topic finds every live provider, before and after a fifth of the peers crash, and a
/// seed replays the run lookup for lookup.
/// </summary>
[TestFixture]
public sealed class DhtSimulationTests
{
    private static readonly TimeSpan PastRefreshAndReannounce = TimeSpan.FromMinutes(31);

    // 300 peers, not 1,000: on the executor the run is one thread, and 1,000 peers cost over a minute
    // of CPU, past the integration tier's budget. The benchmark's dht-sim row runs 1,000 and more.
    [Test]
    public void Lookups_FindEveryLiveProvider_InThreeHundredPeers_BeforeAndAfterAFifthCrash() => SimulationTest.Run(async sim =>
    {
        var wall = Stopwatch.StartNew();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        await using var dht = DhtSimulation.Create(sim, new DhtSimulationOptions { Peers = 300, SeedPeers = 3, Topics = 30, ProvidersPerTopic = 2 });

        await dht.BootstrapAsync(CancellationToken.None);
        Report($"bootstrap of 300 peers: mean routing table {dht.MeanRoutingTableSize:F1} peers");
        await dht.AnnounceAsync(CancellationToken.None);
        Report("30 topics announced by 2 peers each");
        var healthy = await dht.LookupAsync(60, CancellationToken.None);
        TestContext.Out.WriteLine(healthy.Format("healthy network"));

        await dht.CrashAsync(0.2);
        await dht.AdvanceAsync(PastRefreshAndReannounce);
        Report($"60 peers crashed, {PastRefreshAndReannounce.TotalMinutes} virtual minutes later (refresh and re-announce ran): mean routing table {dht.MeanRoutingTableSize:F1}");
        var healed = await dht.LookupAsync(60, CancellationToken.None);
        TestContext.Out.WriteLine(healed.Format("after 20% crashed"));
        Report("done");

        Assert.That(healthy.Successes, Is.EqualTo(healthy.Count), "every lookup in the healthy network finds every provider");
        Assert.That(healed.Successes, Is.EqualTo(healed.Count), "every lookup after the crash finds every live provider");

        void Report(string phase) => TestContext.Out.WriteLine(
            $"[{wall.Elapsed.TotalSeconds,6:F1} s wall, {(Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds,6:F1} s CPU, " +
            $"{sim.Clock.Elapsed.TotalSeconds,6:F0} s virtual, {GC.GetTotalMemory(false) >> 20} MiB heap, {dht.Network.ConnectionCount} connections open] {phase}");
    });

    /// <summary>
    /// Same seed, same simulation: who looks up what, and for each lookup the providers it found (in
    /// order), its hops, requests, replies, failures and peers seen, who crashes, and the trace hash
    /// of every step the executor ran.
    /// </summary>
    [Test]
    public void Simulation_ReplaysEveryLookup_WithTheSameSeed()
    {
        var seed = TestSeed.Choose();
        var first = RunSmall(seed);
        var second = RunSmall(seed);

        Assert.That(second.Crashed, Is.EqualTo(first.Crashed), "the same peers crash");
        Assert.That(second.Healthy, Is.EqualTo(first.Healthy), "the same lookups, with the same results and costs, in the healthy network");
        Assert.That(second.Healed, Is.EqualTo(first.Healed), "the same lookups, with the same results and costs, after the crash");
        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash), "the same steps in the same order");
        Assert.That(first.Healthy.Select(s => s.Success), Has.All.True);
        Assert.That(first.Healed.Select(s => s.Success), Has.All.True);
    }

    [Test]
    public void Simulation_TakesAnotherCourse_WithAnotherSeed()
    {
        var seed = TestSeed.Choose();
        var first = RunSmall(seed);
        var other = RunSmall(unchecked(seed + 1));

        Assert.That(other.TraceHash, Is.Not.EqualTo(first.TraceHash));
        Assert.That(other.Healthy, Is.Not.EqualTo(first.Healthy), "other identities, other lookups");
    }

    private sealed record SmallRun(LookupSample[] Healthy, LookupSample[] Healed, IReadOnlyList<string> Crashed, ulong TraceHash);

    private static SmallRun RunSmall(int seed)
    {
        SmallRun? run = null;
        var sim = SimulationTest.Run(async sim =>
        {
            await using var dht = DhtSimulation.Create(sim, new DhtSimulationOptions { Peers = 100, SeedPeers = 3, Topics = 10, ProvidersPerTopic = 2 });
            await dht.BootstrapAsync(CancellationToken.None);
            await dht.AnnounceAsync(CancellationToken.None);
            var healthy = await dht.LookupAsync(30, CancellationToken.None);
            await dht.CrashAsync(0.2);
            await dht.AdvanceAsync(PastRefreshAndReannounce);
            var healed = await dht.LookupAsync(30, CancellationToken.None);
            TestContext.Out.WriteLine(healthy.Format("100 peers, healthy"));
            TestContext.Out.WriteLine(healed.Format("100 peers, after 20% crashed"));
            run = new SmallRun([.. healthy.Samples], [.. healed.Samples], dht.CrashedPeers, 0);
        }, SimulationTest.Options(seed));
        return run! with { TraceHash = sim.TraceHash };
    }
}
