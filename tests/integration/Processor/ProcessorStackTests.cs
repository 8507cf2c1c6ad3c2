using System.Runtime.CompilerServices;
using System.Threading.Channels;
using NSubstitute;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Processor;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Integration.Processor;

/// <summary>
/// The processor on the real RPC stack (RpcNode over P2PHost: Noise, Yamux) on the in-memory
/// network, called directly by another node: answers, streams, limits and cancellation across the stack.
/// </summary>
[CancelAfter(30_000)]
public sealed class ProcessorStackTests
{
    private readonly List<IAsyncDisposable> _owned = [];
    private FakeTimeProvider _time = null!;
    private InMemoryNetwork _network = null!;
    private Random _keys = null!;
    private P2PHost _processorHost = null!;
    private RpcNode _processorNode = null!;
    private RpcNode _caller = null!;
    private ProcessorWorker _worker = null!;

    [SetUp]
    public async Task StartAsync()
    {
        _time = new FakeTimeProvider();
        var seed = TestSeed.Choose();
        _network = new InMemoryNetwork(seed: seed);
        // Peer ids from the test's seed too, so the seed replays them.
        _keys = new Random(seed);
        _processorHost = await StartHostAsync("processor");
        var callerHost = await StartHostAsync("caller");
        callerHost.PeerStore.AddAddresses(_processorHost.PeerId, _processorHost.AdvertisedAddresses);
        _processorNode = new RpcNode(_processorHost, new RpcOptions { TimeProvider = _time });
        _caller = new RpcNode(callerHost, new RpcOptions { TimeProvider = _time });
    }

    [TearDown]
    public async Task StopAsync()
    {
        if (_worker is not null) await _worker.StopAsync(CancellationToken.None);
        await _caller.DisposeAsync();
        await _processorNode.DisposeAsync();
        foreach (var owned in _owned) await owned.DisposeAsync();
        _owned.Clear();
    }

    private async Task<P2PHost> StartHostAsync(string name)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.FromRandom(_keys),
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _time,
            IdentifyOnConnect = false,
        });
        _owned.Add(host);
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], CancellationToken.None);
        return host;
    }

    private async Task<IReadOnlyList<string>> StartWorkerAsync(IInferenceEngine? engine, ProcessorOptions? options = null)
    {
        _worker = new ProcessorWorker(options ?? new ProcessorOptions(), engine);
        return await _worker.StartAsync(new WorkerContext
        {
            Identity = _processorHost.Identity,
            Server = _processorNode,
            Client = _processorNode,
            Discovery = Substitute.For<IDiscovery>(),
            Store = Substitute.For<IKeyValueStore>(),
            Time = _time,
            Random = TestSeed.CreateRandom(),
        }, CancellationToken.None);
    }

    private static BuiltinEngine Builtin() => new(new BuiltinEngineOptions { StopAtEndOfText = false });

    [Test]
    public async Task Infer_AcrossTheStack_ReturnsTheSameTextAsTheStream()
    {
        using var engine = Builtin();
        var topics = await StartWorkerAsync(engine);
        var request = new InferRequest { RequestId = "it-1", Model = BuiltinEngineOptions.DefaultModelName, Prompt = "The old house", MaxTokens = 12, Seed = 42, Temperature = 0.7 };

        var whole = await _caller.RequestAsync(_processorHost.PeerId, WorkerMethods.Processor.Infer, request, InferResponse.Parser);
        var chunks = new List<InferChunk>();
        await foreach (var chunk in _caller.RequestStreamAsync(_processorHost.PeerId, WorkerMethods.Processor.InferStream, request, InferChunk.Parser))
            chunks.Add(chunk);

        Assert.That(topics, Does.Contain(WorkerTopics.Processor).And.Contain(WorkerTopics.Model(BuiltinEngineOptions.DefaultModelName)));
        Assert.That(whole.Text, Is.Not.Empty);
        Assert.That(whole.Processor, Is.EqualTo(_processorHost.PeerId.ToString()));
        Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo(whole.Text));
        Assert.That(chunks.Select(c => c.RequestId), Is.All.EqualTo("it-1"));
        Assert.That(chunks[^1].FinishReason, Is.EqualTo("length"));
    }

    [Test]
    public async Task LlamaSharpEngine_FromConfiguration_ServesAGgufModel_AcrossTheStack()
    {
        var directory = Directory.CreateTempSubdirectory("p2p-gguf-").FullName;
        try
        {
            var path = Path.Combine(directory, "tiny-llama.gguf");
            Engines.TinyGguf.Write(path);
            var topics = await StartWorkerAsync(null, new ProcessorOptions
            {
                Engine = new EngineOptions { Kind = "llamasharp", ModelPath = path, ContextLength = 64, Threads = 1 },
            });
            var request = new InferRequest { RequestId = "it-gguf", Model = "tiny-llama", Prompt = "hello peer", MaxTokens = 4, Temperature = 0 };

            var chunks = new List<InferChunk>();
            await foreach (var chunk in _caller.RequestStreamAsync(_processorHost.PeerId, WorkerMethods.Processor.InferStream, request, InferChunk.Parser))
                chunks.Add(chunk);

            Assert.That(topics, Does.Contain(WorkerTopics.Model("tiny-llama")));
            Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo(" peer peer peer peer"), "the tiny model repeats its last token");
            Assert.That(chunks[^1].FinishReason, Is.EqualTo("length"));
        }
        finally
        {
            if (_worker is not null) await _worker.StopAsync(CancellationToken.None);
            _worker = null!;
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task Status_AcrossTheStack_ListsTheModels()
    {
        using var engine = Builtin();
        await StartWorkerAsync(engine, new ProcessorOptions { MaxConcurrency = 3, MaxQueue = 7 });

        var status = await _caller.RequestAsync(_processorHost.PeerId, WorkerMethods.Processor.Status, new StatusRequest(), StatusResponse.Parser);

        Assert.That((status.MaxConcurrency, status.MaxQueue, status.Active, status.Queued), Is.EqualTo((3, 7, 0, 0)));
        Assert.That(status.Models.Select(m => m.Name), Does.Contain(BuiltinEngineOptions.DefaultModelName));
    }

    [Test]
    public async Task StreamCancelledByTheCaller_CancelsTheEngine_AcrossTheStack()
    {
        var engine = new GatedEngine();
        await StartWorkerAsync(engine, new ProcessorOptions { MaxConcurrency = 1 });
        using var cts = new CancellationTokenSource();
        var received = new List<string>();
        var call = Task.Run(async () =>
        {
            await foreach (var chunk in _caller.RequestStreamAsync(_processorHost.PeerId, WorkerMethods.Processor.InferStream,
                new InferRequest { Model = GatedEngine.ModelName, Prompt = "p", MaxTokens = 10 }, InferChunk.Parser, null, cts.Token))
            {
                received.Add(chunk.Text);
                await cts.CancelAsync();
            }
        });
        var generation = await engine.Started.Reader.ReadAsync();
        await generation.Tokens.Writer.WriteAsync("first");

        await generation.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.That(async () => await call, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(received, Is.EqualTo(new[] { "first" }));
        var status = await _caller.RequestAsync(_processorHost.PeerId, WorkerMethods.Processor.Status, new StatusRequest(), StatusResponse.Parser);
        while (status.Active > 0)
        {
            await Task.Yield();
            status = await _caller.RequestAsync(_processorHost.PeerId, WorkerMethods.Processor.Status, new StatusRequest(), StatusResponse.Parser);
        }
        Assert.That(status.Active, Is.Zero, "the cancelled generation gave its slot back");
    }

    [Test]
    public async Task QueueFull_AcrossTheStack_IsResourceExhaustedWithRetryAfter_AndBadInputLeavesTheConnectionServing()
    {
        var engine = new GatedEngine();
        await StartWorkerAsync(engine, new ProcessorOptions { MaxConcurrency = 1, MaxQueue = 0, QueueFullRetryAfter = TimeSpan.FromMilliseconds(1500) });
        var request = new InferRequest { Model = GatedEngine.ModelName, Prompt = "p", MaxTokens = 10 };
        var running = _caller.RequestAsync(_processorHost.PeerId, WorkerMethods.Processor.Infer, request, InferResponse.Parser);
        var generation = await engine.Started.Reader.ReadAsync();

        var busy = Assert.ThrowsAsync<RpcException>(() => _caller.RequestAsync(_processorHost.PeerId, WorkerMethods.Processor.Infer, request, InferResponse.Parser));
        var malformed = Assert.ThrowsAsync<RpcException>(() =>
            _caller.RequestAsync(_processorHost.PeerId, WorkerMethods.Processor.Infer, new byte[] { 0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F }, null, CancellationToken.None));
        generation.Tokens.Writer.TryComplete();

        Assert.That(busy!.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(busy.RetryAfter, Is.EqualTo(TimeSpan.FromMilliseconds(1500)));
        Assert.That(malformed!.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That((await running).FinishReason, Is.EqualTo("stop"));
    }

    /// <summary>An engine whose tokens the test writes; it records when its cancellation token fires.</summary>
    private sealed class GatedEngine : IInferenceEngine
    {
        public const string ModelName = "gated";

        public Channel<Generation> Started { get; } = Channel.CreateUnbounded<Generation>();

        public string Kind => "gated";

        public IReadOnlyList<Workers.Processor.Engines.ModelInfo> Models { get; } = [new Workers.Processor.Engines.ModelInfo(ModelName, "gated", 100, 100)];

        public Task InitializeAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public async IAsyncEnumerable<GeneratedToken> GenerateAsync(InferenceRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            var generation = new Generation();
            cancellationToken.Register(() => generation.Cancelled.TrySetResult());
            Started.Writer.TryWrite(generation);
            var index = 0;
            await foreach (var text in generation.Tokens.Reader.ReadAllAsync(cancellationToken))
                yield return new GeneratedToken(index++, text);
            yield return new GeneratedToken(index, string.Empty, FinishReason.Stop);
        }

        public void Dispose()
        {
        }

        internal sealed class Generation
        {
            public Channel<string> Tokens { get; } = Channel.CreateUnbounded<string>();

            public TaskCompletionSource Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }
}
