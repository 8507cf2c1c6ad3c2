using System.Collections.Concurrent;
using System.Text;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Integration.Harness;

/// <summary>The cluster harness end to end: real hosts on the in-memory network, RAM stores, mock DHT, virtual time.</summary>
[CancelAfter(30_000)]
public sealed class TestClusterTests
{
    private static readonly TimeSpan VirtualTimeout = TimeSpan.FromMinutes(2);

    [Test]
    public async Task Start_BringsUpFiveReadyNodes_WithDistinctStablePeerIds(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 5 }, token);

        await Task.WhenAll(cluster.Nodes.Select(n => n.Ready)).WaitAsync(token);

        Assert.That(cluster.Nodes.Select(n => n.Name), Is.EqualTo(new[] { "node-0", "node-1", "node-2", "node-3", "node-4" }));
        Assert.That(cluster.Nodes.All(n => n.IsRunning), Is.True);
        Assert.That(cluster.Nodes.Select(n => n.PeerId), Is.Unique);
        Assert.That(cluster.Nodes.All(n => cluster.Network.IsListening(n.Name)), Is.True);
        Assert.That(cluster.Nodes.All(n => n.Host.PeerId == n.PeerId), Is.True);
    }

    [Test]
    public async Task ConnectAll_ConnectsEveryPair_AndPingsCrossTheStack(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 5 }, token);

        await cluster.ConnectAllAsync(token);

        foreach (var a in cluster.Nodes)
            foreach (var b in cluster.Nodes.Where(b => b != a))
                Assert.That(a.IsConnectedTo(b), Is.True, $"{a.Name} -> {b.Name}");
        Assert.That(cluster.Network.ConnectionCount, Is.EqualTo(10), "one connection per pair");
        Assert.That(await cluster["node-0"].PingAsync(cluster["node-4"], token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(await cluster["node-3"].PingAsync(cluster["node-1"], token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    }

    [Test]
    public async Task Kill_PeersNoticeTheDisconnect_AndTheirPingsFailWithTransportException(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 5 }, token);
        await cluster.ConnectAllAsync(token);
        var victim = cluster["node-2"];
        var noticed = new ConcurrentDictionary<string, bool>();
        foreach (var node in cluster.Nodes.Where(n => n != victim))
            node.PeerDisconnected += c => { if (c.RemotePeer == victim.PeerId) noticed[node.Name] = true; };

        await cluster.KillAsync(victim.Name, token);
        await cluster.WaitUntilAsync(() => noticed.Count == 4, VirtualTimeout, token);

        Assert.That(victim.IsRunning, Is.False);
        Assert.That(victim.Ready.IsCompleted, Is.False, "Ready waits for the next start");
        Assert.That(() => victim.Host, Throws.InvalidOperationException);
        Assert.That(cluster.Network.ConnectionCountOf(victim.Name), Is.Zero);
        Assert.That(async () => await cluster["node-0"].PingAsync(victim, token), Throws.InstanceOf<TransportException>());
        Assert.That(await cluster["node-0"].PingAsync(cluster["node-1"], token), Is.GreaterThanOrEqualTo(TimeSpan.Zero), "the rest of the cluster is fine");
    }

    [Test]
    public async Task Restart_AfterKill_KeepsThePeerId_AndThePeerIsReachableAgain(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 3 }, token);
        await cluster.ConnectAllAsync(token);
        var node = cluster["node-1"];
        var peerId = node.PeerId;
        var oldHost = node.Host;

        await cluster.KillAsync(node.Name, token);
        await cluster.RestartAsync(node.Name, token);
        await node.Ready.WaitAsync(token);

        Assert.That(node.IsRunning, Is.True);
        Assert.That(node.Starts, Is.EqualTo(2));
        Assert.That(node.Host, Is.Not.SameAs(oldHost));
        Assert.That(node.Host.PeerId, Is.EqualTo(peerId));
        Assert.That(await cluster["node-0"].PingAsync(node, token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(await node.PingAsync(cluster["node-2"], token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(cluster["node-0"].Host.GetConnection(peerId)!.RemotePeer, Is.EqualTo(peerId), "Noise authenticated the same key");
    }

    [Test]
    public async Task PeerIds_AreTheSameForTheSameSeed_AndDifferForAnother(CancellationToken token)
    {
        PeerId[] idsA, idsB, idsC;
        await using (var a = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Seed = 10, Storage = false }, token))
            idsA = a.Nodes.Select(n => n.PeerId).ToArray();
        await using (var b = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Seed = 10, Storage = false }, token))
            idsB = b.Nodes.Select(n => n.PeerId).ToArray();
        await using (var c = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Seed = 11, Storage = false }, token))
            idsC = c.Nodes.Select(n => n.PeerId).ToArray();

        Assert.That(idsB, Is.EqualTo(idsA));
        Assert.That(idsC, Is.Not.EquivalentTo(idsA));
    }

    [Test]
    public async Task Partition_Reset_FailsPings_AndHealRestoresThem(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 3 }, token);
        await cluster.ConnectAllAsync(token);
        var (a, b, c) = (cluster["node-0"], cluster["node-1"], cluster["node-2"]);

        await cluster.PartitionAsync(a.Name, b.Name, PartitionMode.Reset, cancellationToken: token);
        await cluster.WaitUntilAsync(() => !a.IsConnectedTo(b) && !b.IsConnectedTo(a), VirtualTimeout, token);

        Assert.That(async () => await a.PingAsync(b, token), Throws.InstanceOf<TransportException>().With.Message.Contain("partitioned"));
        Assert.That(async () => await b.PingAsync(a, token), Throws.InstanceOf<TransportException>());
        Assert.That(await a.PingAsync(c, token), Is.GreaterThanOrEqualTo(TimeSpan.Zero), "only the partitioned pair is cut");

        await cluster.HealAsync(token);

        Assert.That(await a.PingAsync(b, token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(await b.PingAsync(a, token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    }

    [Test]
    public async Task Partition_Stall_TimesPingsOutOnVirtualTime_AndHealLetsThemThrough(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2 }, token);
        await cluster.ConnectAllAsync(token);
        var (a, b) = (cluster["node-0"], cluster["node-1"]);

        await cluster.PartitionAsync(a.Name, b.Name, cancellationToken: token);
        var before = cluster.Time.GetUtcNow();

        // The ping's stream negotiation never gets an answer: the host's negotiation timeout (virtual) ends it.
        Assert.That(async () => await a.PingAsync(b, token), Throws.InstanceOf<OperationCanceledException>().Or.InstanceOf<IOException>());
        Assert.That(cluster.Time.GetUtcNow() - before, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(10)), "failed by virtual time, not at once");

        await cluster.HealAsync(token);
        await cluster.WaitUntilAsync(async () =>
        {
            try
            {
                await a.PingAsync(b, token);
                return true;
            }
            catch (Exception e) when (e is IOException or OperationCanceledException)
            {
                return false;
            }
        }, VirtualTimeout, token, "a can ping b again");
    }

    [Test]
    public async Task OneWayPartition_CutsOnlyOneDirection_ForOpenConnections(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Storage = false }, token);
        await cluster.ConnectAllAsync(token);

        var partition = await cluster.PartitionAsync("node-0", "node-1", PartitionMode.Stall, oneWay: true, token);

        Assert.That(cluster.Network.Link("node-0", "node-1").Partition, Is.EqualTo(PartitionMode.Stall));
        Assert.That(cluster.Network.Link("node-1", "node-0").Partition, Is.Null);
        partition.Heal();
        Assert.That(cluster.Network.Link("node-0", "node-1").Partition, Is.Null);
    }

    [Test]
    public async Task Storage_SurvivesKillAndRestart_ButNotAWipe(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2 }, token);
        var node = cluster["node-0"];
        var value = cluster.Data.Payload(64);
        await node.Store!.PutAsync("answer", value, token);

        await cluster.KillAsync(node.Name, token);
        await cluster.RestartAsync(node.Name, token);

        Assert.That(await node.Store!.GetAsync("answer", token), Is.EqualTo(value), "an acknowledged write survives a crash");
        Assert.That(node.Store.Restarts, Is.EqualTo(1));

        await cluster.StopAsync(node.Name, token);
        await cluster.RestartAsync(node.Name, keepStorage: true, token);
        Assert.That(await node.Store!.GetAsync("answer", token), Is.EqualTo(value), "and a graceful restart");

        await cluster.RestartAsync(node.Name, keepStorage: false, token);
        Assert.That(await node.Store!.GetAsync("answer", token), Is.Null, "a wipe starts empty");
    }

    [Test]
    public async Task Dispose_LeavesNothingRunning(CancellationToken token)
    {
        var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 4 }, token);
        await cluster.ConnectAllAsync(token);
        var network = cluster.Network;
        var directories = cluster.Nodes.Select(n => n.Store!.Directory).ToArray();
        var nodes = cluster.Nodes;
        Assert.That(network.ConnectionCount, Is.EqualTo(6));

        await cluster.DisposeAsync();

        Assert.That(network.ConnectionCount, Is.Zero);
        Assert.That(nodes.Any(n => n.IsRunning || network.IsListening(n.Name)), Is.False);
        Assert.That(directories.Any(Directory.Exists), Is.False, "stores deleted");
        Assert.That(cluster.MockDht!.LiveNodes, Is.Empty);
        Assert.That(() => cluster.ConnectAllAsync(token), Throws.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public async Task MockDht_FindsAnnouncedNodes_AndAKilledNodesRecordGoesStaleThenExpires(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions
        {
            Nodes = 3,
            Storage = false,
            ConfigureMockDht = dht => dht.RecordTtl = TimeSpan.FromMinutes(1),
        }, token);
        var topic = cluster.Data.Name("topic");
        var provider = cluster["node-1"];
        await provider.Discovery!.AnnounceAsync(topic, token);

        var found = await cluster["node-0"].Discovery!.LookupAsync(topic, token);
        Assert.That(found.Select(p => p.PeerId), Is.EquivalentTo(new[] { provider.PeerId }));
        Assert.That(found[0].Addresses, Does.Contain(provider.Address));

        await cluster.KillAsync(provider.Name, token);
        Assert.That(await cluster["node-0"].Discovery!.LookupAsync(topic, token), Has.Count.EqualTo(1), "a crash leaves its record behind");
        await cluster.WaitUntilAsync(async () => (await cluster["node-0"].Discovery!.LookupAsync(topic, token)).Count == 0,
            TimeSpan.FromMinutes(5), token);
    }

    [Test]
    public async Task Roles_AndComponents_RunOnTheirNodes_AndRestartWithThem(CancellationToken token)
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
        }, token);

        Assert.That(cluster.WithRole("processor").Select(n => n.Name), Is.EqualTo(new[] { "processor-0", "processor-1" }));
        Assert.That(started, Is.EquivalentTo(new[] { "processor-0", "processor-1" }));
        Assert.That(cluster["processor-1"].Get<Probe>().Node, Is.EqualTo("processor-1"));
        Assert.That(() => cluster["gateway-0"].Get<Probe>(), Throws.InvalidOperationException);

        var gateway = cluster["gateway-0"];
        await gateway.ConnectAsync(cluster["processor-1"], token);
        await using (var stream = await gateway.Host.OpenStreamAsync(cluster["processor-1"].PeerId, protocol, token))
        {
            using var reader = new StreamReader(stream);
            Assert.That(await reader.ReadToEndAsync(token), Is.EqualTo("processor-1"));
        }

        await cluster.KillAsync("processor-1", token);
        Assert.That(stopped, Is.EquivalentTo(new[] { "processor-1" }), "a kill tears the component down");
        await cluster.RestartAsync("processor-1", token);
        Assert.That(started.Count(n => n == "processor-1"), Is.EqualTo(2), "a restart starts it again");
    }

    [Test]
    public async Task LinkLatency_IsPaidOnVirtualTime(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions
        {
            Nodes = 2,
            Storage = false,
            LinkLatency = TimeSpan.FromMilliseconds(20),
        }, token);
        await cluster.ConnectAllAsync(token);

        var rtt = await cluster["node-0"].PingAsync(cluster["node-1"], token);

        Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(40)));
    }

    [Test]
    public async Task ManualTime_StaysPut_UntilTheTestMovesIt(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Storage = false, AutoAdvanceTime = false }, token);
        await cluster.ConnectAllAsync(token);
        var before = cluster.Time.GetUtcNow();

        await cluster["node-0"].PingAsync(cluster["node-1"], token);
        Assert.That(cluster.Time.GetUtcNow(), Is.EqualTo(before), "no latency, no time");

        await cluster.AdvanceAsync(TimeSpan.FromSeconds(30), token);
        Assert.That(cluster.Time.GetUtcNow() - before, Is.EqualTo(TimeSpan.FromSeconds(30)));
    }

    [Test]
    public async Task AddNode_JoinsARunningCluster(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 2, Storage = false }, token);

        var late = await cluster.AddNodeAsync(new TestNodeSpec("late", "processor"), token);
        await cluster.ConnectAllAsync(token);

        Assert.That(late.IsRunning, Is.True);
        Assert.That(cluster.Nodes, Has.Count.EqualTo(3));
        Assert.That(await late.PingAsync(cluster["node-0"], token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
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
