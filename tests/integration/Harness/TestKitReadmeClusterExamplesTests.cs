using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;
using P2PInference.TestKit.Store;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Harness;

/// <summary>
/// The TestKit README's examples that start a cluster or the FASTER engine, run as written (the unit
/// tier's <c>TestKitReadmeExamplesTests</c> holds the others and checks that every block of the README
/// is run by some test).
/// </summary>
public sealed class TestKitReadmeClusterExamplesTests
{
    [Test]
    public async Task RamStore_RecoversAcknowledgedWritesAfterAKill()
    {
        var token = CancellationToken.None;
        var value = new byte[] { 4, 5, 6 };

        await using var store = await RamStore.CreateAsync();          // real FASTER on /dev/shm
        await store.PutAsync("k", value, token);                      // acknowledged = durable
        await store.CrashAndRestartAsync(token);                      // a kill: no final commit; recovers
        Assert.That(await store.GetAsync("k", token), Is.EqualTo(value));
    }

    [Test]
    public void Processor_IsReachable_AfterARestart() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;   // a hang fails the run at its virtual-time limit instead
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 5 }, token);
        await cluster.ConnectAllAsync(token);

        var killed = cluster["node-2"];
        await cluster.KillAsync(killed.Name, token);                       // crash: no goodbye
        await cluster.WaitUntilAsync(() => !cluster["node-0"].IsConnectedTo(killed), TimeSpan.FromMinutes(1), token);
        await Assert.ThatAsync(() => cluster["node-0"].PingAsync(killed, token),
            Throws.InstanceOf<TransportException>());                      // connection refused

        await cluster.RestartAsync(killed.Name, token);                    // same PeerId, store recovered
        Assert.That(await cluster["node-0"].PingAsync(killed, token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));

        await cluster.PartitionAsync("node-0", "node-1", PartitionMode.Reset, cancellationToken: token);
        await Assert.ThatAsync(() => cluster["node-0"].PingAsync(cluster["node-1"], token),
            Throws.InstanceOf<IOException>());
        await cluster.HealAsync(token);
    });

    [Test]
    public void Components_StartOnTheNodesOfTheirRoles() => SimulationTest.Run(async sim =>
    {
        var options = new TestClusterOptions
        {
            NodeSpecs = [new("gateway-0", "gateway"), new("processor-0", "processor")],
            Components =
            [
                TestNodeComponent.ForRoles("echo", (context, ct) =>
                {
                    context.Host.Handle("/demo/echo/1.0.0", (stream, token) => stream.Stream.CopyToOnContextAsync(stream.Stream, token)); // not CopyToAsync: it leaves the thread
                    return Task.FromResult<IAsyncDisposable>(NoOpDisposable.Instance);
                }, "processor"),
            ],
        };

        var token = CancellationToken.None;
        await using var cluster = await TestCluster.StartAsync(options, token);
        await cluster["gateway-0"].ConnectAsync(cluster["processor-0"], token);
        await using var stream = await cluster["gateway-0"].Host.OpenStreamAsync(cluster["processor-0"].PeerId, "/demo/echo/1.0.0", token);
        await stream.WriteAndCompleteAsync("hello"u8.ToArray(), token);
        var echoed = new byte[5];
        await stream.ReadExactOnContextAsync(echoed, token);

        Assert.That(echoed, Is.EqualTo("hello"u8.ToArray()), "the processor's component answers");
        Assert.That(cluster["gateway-0"].Host.Protocols, Does.Not.Contain("/demo/echo/1.0.0"), "only the nodes of its roles run it");
    });
}
