using System.Reflection;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.Workers.Hosting;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary>
/// The grant-cost benchmark's baseline (<see cref="WorkerRuntimeOptions.GrantChecksOffForBenchmark"/>):
/// it really skips both checks, so the on/off ratio measures them, and nothing a user configures reaches it.
/// </summary>
[CancelAfter(10_000)]
public sealed class GrantChecksOffTests
{
    private static readonly ClusterKey Cluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)0x36, 32).ToArray()));

    private readonly List<IAsyncDisposable> _owned = [];
    private FakeTimeProvider _time = null!;
    private InMemoryRpcNetwork _rpc = null!;
    private TwinFacilities _facilities = null!;
    private string _dataDir = null!;

    [SetUp]
    public void SetUp()
    {
        _time = new FakeTimeProvider();
        _rpc = new InMemoryRpcNetwork(_time);
        _facilities = new TwinFacilities(_rpc, new MockDhtRegistry(_time));
        _dataDir = Path.Combine(Path.GetTempPath(), "p2pinference-grantsoff-" + Guid.NewGuid().ToString("N"));
    }

    [TearDown]
    public async Task TearDown()
    {
        foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
        _owned.Clear();
        if (Directory.Exists(_dataDir)) Directory.Delete(_dataDir, recursive: true);
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task Processor_ServesCallersWithoutAGrant_OnlyWithChecksOff_AndPresentsItsGrantEitherWay(bool checksOff, CancellationToken ct)
    {
        var runtime = await StartAsync(WorkerRole.Processor, checksOff, ct);
        var caller = Node();

        var presented = RoleGrant.Decode(await caller.RequestAsync(runtime.PeerId, GrantExchange.Method, ReadOnlyMemory<byte>.Empty, null, ct));
        RpcStatusCode? refused = null;
        try
        {
            await caller.RequestAsync(runtime.PeerId, TestWorker.Echo, "x"u8.ToArray(), null, ct);
        }
        catch (RpcException e)
        {
            refused = e.Code;
        }

        Assert.Multiple(() =>
        {
            Assert.That(presented.Peer, Is.EqualTo(runtime.PeerId));
            Assert.That(presented.Role, Is.EqualTo(GrantRole.Processor));
            Assert.That(refused, checksOff ? Is.Null : Is.EqualTo(RpcStatusCode.PermissionDenied));
        });
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task Worker_CallsAProcessorWithoutAGrant_OnlyWithChecksOff_AndSendsItsOwnGrantOnlyWithChecksOn(bool checksOff, CancellationToken ct)
    {
        var gateway = await StartAsync(WorkerRole.Gateway, checksOff, ct);
        // A "processor" that presents no grant (it does not answer trust.grant) and reports what the caller sent.
        var ungranted = Node();
        ungranted.Respond("processor.bench", (_, call) =>
            ValueTask.FromResult<ReadOnlyMemory<byte>>(call.Metadata.ContainsKey(GrantExchange.MetadataKey) ? "granted"u8.ToArray() : "bare"u8.ToArray()));

        string? answer = null;
        RpcStatusCode? refused = null;
        try
        {
            answer = System.Text.Encoding.UTF8.GetString(
                await gateway.Context!.Client.RequestAsync(ungranted.PeerId, "processor.bench", "x"u8.ToArray(), null, ct));
        }
        catch (RpcException e)
        {
            refused = e.Code;
        }

        if (checksOff)
            Assert.That(answer, Is.EqualTo("bare"), "called without checking the callee, and without the caller's grant");
        else
            Assert.That(refused, Is.EqualTo(RpcStatusCode.Unavailable), "a callee with no processor grant is not called");
    }

    [Test]
    public void ChecksOff_IsNoPublicOption()
    {
        var property = typeof(WorkerRuntimeOptions).GetProperty(nameof(WorkerRuntimeOptions.GrantChecksOffForBenchmark),
            BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)!;

        Assert.Multiple(() =>
        {
            Assert.That(property.GetMethod!.IsAssembly && property.SetMethod!.IsAssembly, Is.True, "internal: reachable from the tests and benchmarks only");
            Assert.That(new WorkerRuntimeOptions { Role = WorkerRole.Processor, DataDirectory = _dataDir }.GrantChecksOffForBenchmark, Is.False, "on by default");
        });
    }

    [TestCase("Trust:GrantChecksOffForBenchmark")]
    [TestCase("Node:GrantChecksOffForBenchmark")]
    [TestCase("GrantChecksOffForBenchmark")]
    public void Configuration_CannotTurnChecksOff(string key)
    {
        var sources = new WorkerConfigurationSources
        {
            BaseDirectory = Path.GetTempPath(),
            EnvironmentVariables = new Dictionary<string, string?>(),
            Overrides = new Dictionary<string, string?> { [key] = "true" },
        };

        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("processor", sources));

        Assert.That(error!.Errors, Has.Some.Contains("GrantChecksOffForBenchmark is not a known"));
    }

    private async Task<WorkerRuntime> StartAsync(WorkerRole role, bool checksOff, CancellationToken ct)
    {
        var runtime = new WorkerRuntime(new WorkerRuntimeOptions
        {
            Role = role,
            DataDirectory = _dataDir,
            TimeProvider = _time,
            RandomSeed = 1,
            ClusterKey = Cluster,
            GrantChecksOffForBenchmark = checksOff,
        }, new TestWorker(_facilities.Record), _facilities);
        _owned.Add(runtime);
        await runtime.StartAsync(ct);
        return runtime;
    }

    private InMemoryRpcNode Node()
    {
        var node = _rpc.CreateNode();
        _owned.Add(node);
        return node;
    }
}
