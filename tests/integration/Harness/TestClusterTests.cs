using System.Collections.Concurrent;
using System.Text;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit;
using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Harness;

/// <summary>The cluster harness end to end: real hosts on the in-memory network, RAM stores, mock DHT, in a simulation.</summary>
public sealed class TestClusterTests
{
    private static readonly TimeSpan VirtualTimeout = TimeSpan.FromMinutes(2);

    [Test]
    public void Start_BringsUpFiveReadyNodes_WithDistinctStablePeerIds() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 5 }, CancellationToken.None);

        await Task.WhenAll(cluster.Nodes.Select(n => n.Ready));

        Assert.That(cluster.Nodes.Select(n => n.Name), Is.EqualTo(new[] { "node-0", "node-1", "node-2", "node-3", "node-4" }));
        Assert.That(cluster.Nodes.All(n => n.IsRunning), Is.True);
        Assert.That(cluster.Nodes.Select(n => n.PeerId), Is.Unique);
        Assert.That(cluster.Nodes.All(n => cluster.Network.IsListening(n.Name)), Is.True);
        Assert.That(cluster.Nodes.All(n => n.Host.PeerId == n.PeerId), Is.True);
    });

    [Test]
    public void ConfigureHost_ChangesWhatANodeTellsItsPeers_AndAThrowingPeerConnectedHandlerStopsNoOther() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions
        {
            Nodes = 2,
            ConfigureHost = (spec, options) => options with { AgentVersion = $"custom/{spec.Name}" },
        }, CancellationToken.None);
        var seen = new List<string>();
        cluster["node-1"].PeerConnected += _ => throw new InvalidOperationException("a test's handler is broken");
        cluster["node-1"].PeerConnected += c => seen.Add(c.RemotePeer.ToString());

        await cluster.ConnectAllAsync(CancellationToken.None);
        var info = await cluster["node-0"].Host.IdentifyAsync(cluster["node-1"].PeerId, CancellationToken.None);

        Assert.That(info.AgentVersion, Is.EqualTo("custom/node-1"));
        Assert.That(seen, Is.EqualTo(new[] { cluster["node-0"].PeerId.ToString() }));
    });

    [Test]
    public void ConnectAll_ConnectsEveryPair_AndPingsCrossTheStack() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 5 }, CancellationToken.None);

        await cluster.ConnectAllAsync(CancellationToken.None);

        foreach (var a in cluster.Nodes)
            foreach (var b in cluster.Nodes.Where(b => b != a))
                Assert.That(a.IsConnectedTo(b), Is.True, $"{a.Name} -> {b.Name}");
        Assert.That(cluster.Network.ConnectionCount, Is.EqualTo(10), "one connection per pair");
        Assert.That(await cluster["node-0"].PingAsync(cluster["node-4"], CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(await cluster["node-3"].PingAsync(cluster["node-1"], CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    });

    [Test]
    public void Kill_PeersNoticeTheDisconnect_AndTheirPingsFailWithTransportException() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 5 }, CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);
        var victim = cluster["node-2"];
        var noticed = new ConcurrentDictionary<string, bool>();
        foreach (var node in cluster.Nodes.Where(n => n != victim))
            node.PeerDisconnected += c => { if (c.RemotePeer == victim.PeerId) noticed[node.Name] = true; };

        await cluster.KillAsync(victim.Name, CancellationToken.None);
        await cluster.WaitUntilAsync(() => noticed.Count == 4, VirtualTimeout, CancellationToken.None);

        Assert.That(victim.IsRunning, Is.False);
        Assert.That(victim.Ready.IsCompleted, Is.False, "Ready waits for the next start");
        Assert.That(() => victim.Host, Throws.InvalidOperationException);
        Assert.That(cluster.Network.ConnectionCountOf(victim.Name), Is.Zero);
        await Assert.ThatAsync(() => cluster["node-0"].PingAsync(victim, CancellationToken.None), Throws.InstanceOf<TransportException>());
        Assert.That(await cluster["node-0"].PingAsync(cluster["node-1"], CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero), "the rest of the cluster is fine");
    });

    [Test]
    public void Restart_AfterKill_KeepsThePeerId_AndThePeerIsReachableAgain() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 3 }, CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);
        var node = cluster["node-1"];
        var peerId = node.PeerId;
        var oldHost = node.Host;

        await cluster.KillAsync(node.Name, CancellationToken.None);
        await cluster.RestartAsync(node.Name, CancellationToken.None);
        await node.Ready;

        Assert.That(node.IsRunning, Is.True);
        Assert.That(node.Starts, Is.EqualTo(2));
        Assert.That(node.Host, Is.Not.SameAs(oldHost));
        Assert.That(node.Host.PeerId, Is.EqualTo(peerId));
        Assert.That(await cluster["node-0"].PingAsync(node, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(await node.PingAsync(cluster["node-2"], CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(cluster["node-0"].Host.GetConnection(peerId)!.RemotePeer, Is.EqualTo(peerId), "Noise authenticated the same key");
    });

    [Test]
    public void PeerIds_AreTheSameForTheSameSeed_AndDifferForAnother()
    {
        static PeerId[] PeerIdsWith(int seed) => SimulationTest.Run(async _ =>
        {
            await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Storage = false }, CancellationToken.None);
            return cluster.Nodes.Select(n => n.PeerId).ToArray();
        }, SimulationTest.Options(seed));

        var idsA = PeerIdsWith(10);

        Assert.That(PeerIdsWith(10), Is.EqualTo(idsA));
        Assert.That(PeerIdsWith(11), Is.Not.EquivalentTo(idsA));
    }

    [Test]
    public void Partition_Reset_FailsPings_AndHealRestoresThem() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 3 }, CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);
        var (a, b, c) = (cluster["node-0"], cluster["node-1"], cluster["node-2"]);

        await cluster.PartitionAsync(a.Name, b.Name, PartitionMode.Reset, cancellationToken: CancellationToken.None);
        await cluster.WaitUntilAsync(() => !a.IsConnectedTo(b) && !b.IsConnectedTo(a), VirtualTimeout, CancellationToken.None);

        await Assert.ThatAsync(() => a.PingAsync(b, CancellationToken.None), Throws.InstanceOf<TransportException>().With.Message.Contain("partitioned"));
        await Assert.ThatAsync(() => b.PingAsync(a, CancellationToken.None), Throws.InstanceOf<TransportException>());
        Assert.That(await a.PingAsync(c, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero), "only the partitioned pair is cut");

        await cluster.HealAsync(CancellationToken.None);

        Assert.That(await a.PingAsync(b, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(await b.PingAsync(a, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    });

    [Test]
    public void Partition_Stall_TimesPingsOutOnVirtualTime_AndHealLetsThemThrough() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2 }, CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);
        var (a, b) = (cluster["node-0"], cluster["node-1"]);

        await cluster.PartitionAsync(a.Name, b.Name, cancellationToken: CancellationToken.None);
        var before = cluster.Time.GetUtcNow();

        // The ping's stream negotiation never gets an answer: the host's negotiation timeout (virtual) ends it.
        await Assert.ThatAsync(() => a.PingAsync(b, CancellationToken.None), Throws.InstanceOf<OperationCanceledException>().Or.InstanceOf<IOException>());
        Assert.That(cluster.Time.GetUtcNow() - before, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(10)), "failed by virtual time, not at once");

        await cluster.HealAsync(CancellationToken.None);
        await cluster.WaitUntilAsync(async () =>
        {
            try
            {
                await a.PingAsync(b, CancellationToken.None);
                return true;
            }
            catch (Exception e) when (e is IOException or OperationCanceledException)
            {
                return false;
            }
        }, VirtualTimeout, CancellationToken.None, "a can ping b again");
    });

    [Test]
    public void OneWayPartition_CutsOnlyOneDirection_ForOpenConnections() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Storage = false }, CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);

        var partition = await cluster.PartitionAsync("node-0", "node-1", PartitionMode.Stall, oneWay: true, CancellationToken.None);

        Assert.That(cluster.Network.Link("node-0", "node-1").Partition, Is.EqualTo(PartitionMode.Stall));
        Assert.That(cluster.Network.Link("node-1", "node-0").Partition, Is.Null);
        partition.Heal();
        Assert.That(cluster.Network.Link("node-0", "node-1").Partition, Is.Null);
    });

    [Test]
    public void Storage_SurvivesKillAndRestart_ButNotAWipe() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2 }, CancellationToken.None);
        var node = cluster["node-0"];
        var value = cluster.Data.Payload(64);
        await node.Store!.PutAsync("answer", value, CancellationToken.None);

        await cluster.KillAsync(node.Name, CancellationToken.None);
        await cluster.RestartAsync(node.Name, CancellationToken.None);

        Assert.That(await node.Store!.GetAsync("answer", CancellationToken.None), Is.EqualTo(value), "an acknowledged write survives a crash");
        Assert.That(node.Store.Restarts, Is.EqualTo(1));

        await cluster.StopAsync(node.Name, CancellationToken.None);
        await cluster.RestartAsync(node.Name, keepStorage: true, CancellationToken.None);
        Assert.That(await node.Store!.GetAsync("answer", CancellationToken.None), Is.EqualTo(value), "and a graceful restart");

        await cluster.RestartAsync(node.Name, keepStorage: false, CancellationToken.None);
        Assert.That(await node.Store!.GetAsync("answer", CancellationToken.None), Is.Null, "a wipe starts empty");
    });

    /// <summary>
    /// A peer restarted right after a crash is reached at once, whichever the order the schedule gives
    /// the old connection's reset and the new ping: a stream opened on a connection that turns out dead
    /// is opened again on a new one.
    /// </summary>
    [Test]
    public void Ping_RightAfterAKillAndRestart_ReachesTheNewProcess_OnEveryRandomSchedule()
    {
        // Seed 4242 is a schedule where the reset came after the new ping (found by exploring), then 19 more.
        foreach (var seed in new[] { 4242 }.Concat(Enumerable.Range(TestSeed.Choose() % 100_000, 19)))
        {
            SimulationTest.Run(async sim =>
            {
                await using var cluster = await TestCluster.StartAsync(new TestClusterOptions
                {
                    Nodes = 3,
                    LinkLatency = TimeSpan.FromMilliseconds(5),
                    LinkJitter = TimeSpan.FromMilliseconds(3),
                }, CancellationToken.None);
                await cluster.ConnectAllAsync(CancellationToken.None);
                var before = cluster["node-2"].Host;

                await cluster.KillAsync("node-2", CancellationToken.None);
                await cluster.RestartAsync("node-2", CancellationToken.None);
                await cluster["node-0"].PingAsync(cluster["node-2"], CancellationToken.None);

                Assert.That(cluster["node-2"].Host, Is.Not.SameAs(before));
                Assert.That(cluster["node-0"].IsConnectedTo(cluster["node-2"]), Is.True);
            }, SimulationTest.Options(seed) with { Strategy = ScheduleStrategy.Random });
        }
    }

    [Test]
    public void Dispose_LeavesNothingRunning() => SimulationTest.Run(async sim =>
    {
        var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 4 }, CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);
        var network = cluster.Network;
        var stores = cluster.Nodes.Select(n => n.Store!).ToArray();
        var nodes = cluster.Nodes;
        Assert.That(network.ConnectionCount, Is.EqualTo(6));

        await cluster.DisposeAsync();

        Assert.That(network.ConnectionCount, Is.Zero);
        Assert.That(nodes.Any(n => n.IsRunning || network.IsListening(n.Name)), Is.False);
        foreach (var store in stores)
            await Assert.ThatAsync(async () => await store.GetAsync("any", CancellationToken.None), Throws.TypeOf<ObjectDisposedException>(), "stores closed");
        Assert.That(cluster.MockDht!.LiveNodes, Is.Empty);
        await Assert.ThatAsync(() => cluster.ConnectAllAsync(CancellationToken.None), Throws.InstanceOf<ObjectDisposedException>());
    });

    [Test]
    public void MockDht_FindsAnnouncedNodes_AndAKilledNodesRecordGoesStaleThenExpires() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions
        {
            Nodes = 3,
            Storage = false,
            ConfigureMockDht = dht => dht.RecordTtl = TimeSpan.FromMinutes(1),
        }, CancellationToken.None);
        var topic = cluster.Data.Name("topic");
        var provider = cluster["node-1"];
        await provider.Discovery!.AnnounceAsync(topic, CancellationToken.None);

        var found = await cluster["node-0"].Discovery!.LookupAsync(topic, CancellationToken.None);
        Assert.That(found.Select(p => p.PeerId), Is.EquivalentTo(new[] { provider.PeerId }));
        Assert.That(found[0].Addresses, Does.Contain(provider.Address));

        await cluster.KillAsync(provider.Name, CancellationToken.None);
        Assert.That(await cluster["node-0"].Discovery!.LookupAsync(topic, CancellationToken.None), Has.Count.EqualTo(1), "a crash leaves its record behind");
        await cluster.WaitUntilAsync(async () => (await cluster["node-0"].Discovery!.LookupAsync(topic, CancellationToken.None)).Count == 0,
            TimeSpan.FromMinutes(5), CancellationToken.None);
    });

    [Test]
    public void Roles_AndComponents_RunOnTheirNodes_AndRestartWithThem() => SimulationTest.Run(async sim =>
    {
        const string protocol = "/test/echo-name/1.0.0";
        var started = new ConcurrentQueue<string>();
        var stopped = new ConcurrentQueue<string>();
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions
        {
            NodeSpecs = [new("gateway-0", "gateway"), new("processor-0", "processor"), new("processor-1", "processor")],
            Storage = false,
            Components =
            [
                TestNodeComponent.ForRoles("echo", (context, _) =>
                {
                    context.Host.Handle(protocol, async (stream, ct) =>
                    {
                        await stream.Stream.WriteAsync(Encoding.UTF8.GetBytes(context.Name), ct);
                        await stream.Stream.CompleteWritesAsync(ct);
                    });
                    started.Enqueue(context.Name);
                    return Task.FromResult<IAsyncDisposable>(new Probe(context.Name, stopped));
                }, "processor"),
            ],
        }, CancellationToken.None);

        Assert.That(cluster.WithRole("processor").Select(n => n.Name), Is.EqualTo(new[] { "processor-0", "processor-1" }));
        Assert.That(started, Is.EquivalentTo(new[] { "processor-0", "processor-1" }));
        Assert.That(cluster["processor-1"].Get<Probe>().Node, Is.EqualTo("processor-1"));
        Assert.That(() => cluster["gateway-0"].Get<Probe>(), Throws.InvalidOperationException);

        var gateway = cluster["gateway-0"];
        await gateway.ConnectAsync(cluster["processor-1"], CancellationToken.None);
        await using (var stream = await gateway.Host.OpenStreamAsync(cluster["processor-1"].PeerId, protocol, CancellationToken.None))
        {
            using var reader = new StreamReader(stream);
            Assert.That(await reader.ReadToEndAsync(CancellationToken.None), Is.EqualTo("processor-1"));
        }

        await cluster.KillAsync("processor-1", CancellationToken.None);
        Assert.That(stopped, Is.EquivalentTo(new[] { "processor-1" }), "a kill tears the component down");
        await cluster.RestartAsync("processor-1", CancellationToken.None);
        Assert.That(started.Count(n => n == "processor-1"), Is.EqualTo(2), "a restart starts it again");
    });

    [Test]
    public void LinkLatency_IsPaidOnVirtualTime() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions
        {
            Nodes = 2,
            Storage = false,
            LinkLatency = TimeSpan.FromMilliseconds(20),
        }, CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);

        var rtt = await cluster["node-0"].PingAsync(cluster["node-1"], CancellationToken.None);

        Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(40)));
    });

    [Test]
    public void ZeroLatencyLinks_TakeNoVirtualTime_AndAdvanceMovesTheClockExactly() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Storage = false }, CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);
        var before = cluster.Time.GetUtcNow();

        await cluster["node-0"].PingAsync(cluster["node-1"], CancellationToken.None);
        Assert.That(cluster.Time.GetUtcNow(), Is.EqualTo(before), "no latency, no time");

        await cluster.AdvanceAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        Assert.That(cluster.Time.GetUtcNow() - before, Is.EqualTo(TimeSpan.FromSeconds(30)));
    });

    [Test]
    public void AddNode_JoinsARunningCluster() => SimulationTest.Run(async sim =>
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Storage = false }, CancellationToken.None);

        var late = await cluster.AddNodeAsync(new TestNodeSpec("late", "processor"), CancellationToken.None);
        await cluster.ConnectAllAsync(CancellationToken.None);

        Assert.That(late.IsRunning, Is.True);
        Assert.That(cluster.Nodes, Has.Count.EqualTo(3));
        Assert.That(await late.PingAsync(cluster["node-0"], CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    });

    [Test]
    public void SameSeed_ReplaysTheSameTrace_AndAnotherSeedTakesAnother()
    {
        var first = RunSmallCluster(seed: 4242);
        var replay = RunSmallCluster(seed: 4242);
        var other = RunSmallCluster(seed: 4243);

        TestContext.Out.WriteLine($"seed 4242: {first.TraceHash:x16}, again: {replay.TraceHash:x16}, seed 4243: {other.TraceHash:x16}");
        Assert.That(replay, Is.EqualTo(first), "same seed, same run, step for step");
        Assert.That(other.TraceHash, Is.Not.EqualTo(first.TraceHash));
    }

    /// <summary>A small scenario with what a seed decides: identities, jittered links, a kill and a restart.</summary>
    private static (ulong TraceHash, long Steps, string Log) RunSmallCluster(int seed)
    {
        var log = new List<string>();
        var sim = SimulationTest.Run(async sim =>
        {
            await using var cluster = await TestCluster.StartAsync(new TestClusterOptions
            {
                Nodes = 3,
                LinkLatency = TimeSpan.FromMilliseconds(5),
                LinkJitter = TimeSpan.FromMilliseconds(3),
            }, CancellationToken.None);
            await cluster.ConnectAllAsync(CancellationToken.None);
            log.Add($"ping {(await cluster["node-0"].PingAsync(cluster["node-1"], CancellationToken.None)).Ticks}");
            await cluster.KillAsync("node-2", CancellationToken.None);
            await cluster.RestartAsync("node-2", CancellationToken.None);
            log.Add($"ping {(await cluster["node-0"].PingAsync(cluster["node-2"], CancellationToken.None)).Ticks}");
            log.Add($"at {sim.Clock.Elapsed.Ticks}");
        }, SimulationTest.Options(seed));
        return (sim.TraceHash, sim.Steps, string.Join('\n', log));
    }

    private sealed class Probe(string node, ConcurrentQueue<string> stopped) : IAsyncDisposable
    {
        public string Node { get; } = node;

        public ValueTask DisposeAsync()
        {
            stopped.Enqueue(Node);
            return ValueTask.CompletedTask;
        }
    }
}
