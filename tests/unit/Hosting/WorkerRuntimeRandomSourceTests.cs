using Microsoft.Extensions.Time.Testing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary>
/// The runtime hands its <see cref="WorkerRuntimeOptions.RandomSource"/> on: a new node's identity,
/// the worker's <see cref="WorkerContext.RandomSource"/> and, with no RandomSeed, the seed of
/// <see cref="WorkerContext.Random"/> all come from it, so one seeded source replays a node.
/// </summary>
[CancelAfter(10_000)]
public sealed class WorkerRuntimeRandomSourceTests
{
    private readonly List<string> _dataDirs = [];

    [TearDown]
    public void DeleteDataDirs()
    {
        foreach (var dir in _dataDirs)
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private static readonly ClusterKey Cluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)0x34, 32).ToArray()));

    private sealed record Node(PeerId PeerId, IRandomSource Source, int FirstDraw);

    private async Task<Node> StartNodeAsync(IRandomSource? source, CancellationToken ct)
    {
        var time = new FakeTimeProvider();
        var facilities = new TwinFacilities(new InMemoryRpcNetwork(time), new MockDhtRegistry(time));
        // The directory name only keeps parallel tests apart; it is not part of what is compared.
        var dataDir = Path.Combine(Path.GetTempPath(), "p2pinference-random-" + SystemRandomSource.Instance.NextHex(8));
        _dataDirs.Add(dataDir);
        // Null leaves RandomSource unset, so the default is what runs.
        var options = source is null
            ? new WorkerRuntimeOptions { Role = WorkerRole.Processor, DataDirectory = dataDir, TimeProvider = time, ClusterKey = Cluster }
            : new WorkerRuntimeOptions { Role = WorkerRole.Processor, DataDirectory = dataDir, TimeProvider = time, RandomSource = source, ClusterKey = Cluster };
        await using var runtime = new WorkerRuntime(options, new TestWorker(facilities.Record), facilities);
        await runtime.StartAsync(ct);
        var context = runtime.Context!;
        var node = new Node(runtime.PeerId, context.RandomSource, context.Random.Next());
        await runtime.StopAsync(ct);
        return node;
    }

    [Test]
    public async Task SeededSource_ReplaysIdentityAndWorkerRandomness(CancellationToken ct)
    {
        var source = new SeededRandomSource(new Random(12));
        var first = await StartNodeAsync(source, ct);
        var second = await StartNodeAsync(new SeededRandomSource(new Random(12)), ct);

        Assert.Multiple(() =>
        {
            Assert.That(first.Source, Is.SameAs(source), "the worker gets the runtime's source");
            Assert.That(second.PeerId, Is.EqualTo(first.PeerId), "a new identity is drawn from the source");
            Assert.That(second.FirstDraw, Is.EqualTo(first.FirstDraw), "WorkerContext.Random is seeded from the source");
        });
    }

    [Test]
    public async Task DefaultSource_IsTheSystemOne_AndGivesEveryNewNodeItsOwnIdentity(CancellationToken ct)
    {
        var first = await StartNodeAsync(null, ct);
        var second = await StartNodeAsync(null, ct);

        Assert.That(first.Source, Is.SameAs(SystemRandomSource.Instance));
        Assert.That(second.PeerId, Is.Not.EqualTo(first.PeerId));
    }
}
