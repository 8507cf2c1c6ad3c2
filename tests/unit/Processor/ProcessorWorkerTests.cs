using Google.Protobuf;
using NSubstitute;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.TestKit;
using P2PInference.TestKit.Rpc;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Processor;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Unit.Processor;

/// <summary>The processor as its callers see it, over the RPC twin: answers, limits, errors, cancellation.</summary>
[CancelAfter(10_000)]
public sealed class ProcessorWorkerTests
{
    private FakeTimeProvider _time = null!;
    private InMemoryRpcNetwork _network = null!;
    private KeyPair _identity = null!;
    private InMemoryRpcNode _server = null!;
    private InMemoryRpcNode _caller = null!;
    private ProcessorWorker? _worker;

    [SetUp]
    public void CreateNetwork()
    {
        _time = new FakeTimeProvider();
        _network = new InMemoryRpcNetwork(_time);
        _identity = KeyPair.FromRandom(TestSeed.CreateRandom());
        _server = _network.CreateNode(_identity.PeerId);
        _caller = _network.CreateNode();
    }

    [TearDown]
    public async Task DisposeAsync()
    {
        if (_worker is not null) await _worker.StopAsync(CancellationToken.None);
        await _caller.DisposeAsync();
        await _server.DisposeAsync();
    }

    private async Task<IReadOnlyList<string>> StartAsync(IInferenceEngine engine, ProcessorOptions? options = null)
    {
        _worker = new ProcessorWorker(options ?? new ProcessorOptions(), engine);
        return await _worker.StartAsync(new WorkerContext
        {
            Identity = _identity,
            Server = _server,
            Client = _server,
            Discovery = Substitute.For<IDiscovery>(),
            Store = Substitute.For<IKeyValueStore>(),
            Time = _time,
            Random = TestSeed.CreateRandom(),
        }, CancellationToken.None);
    }

    private static BuiltinEngine Builtin() => new(new BuiltinEngineOptions
    {
        CorpusText = "The cat sat on the mat. The dog sat on the rug. The cat ran to the dog.",
        StopAtEndOfText = false,
    });

    private static InferRequest Request(string model = "m1", string prompt = "hello", string? id = null) =>
        new() { Model = model, Prompt = prompt, MaxTokens = 10, RequestId = id ?? string.Empty };

    private Task<InferResponse> InferAsync(InferRequest request, CancellationToken ct = default, InMemoryRpcNode? from = null) =>
        (from ?? _caller).RequestAsync(_identity.PeerId, WorkerMethods.Processor.Infer, request, InferResponse.Parser, null, ct);

    private async Task<List<InferChunk>> StreamAsync(InferRequest request, CancellationToken ct = default)
    {
        var chunks = new List<InferChunk>();
        await foreach (var chunk in _caller.RequestStreamAsync(_identity.PeerId, WorkerMethods.Processor.InferStream, request, InferChunk.Parser, null, ct))
            chunks.Add(chunk);
        return chunks;
    }

    private Task<StatusResponse> StatusAsync() =>
        _caller.RequestAsync(_identity.PeerId, WorkerMethods.Processor.Status, new StatusRequest(), StatusResponse.Parser);

    private static async Task<RpcException> FailureOf(Task call)
    {
        try
        {
            await call;
        }
        catch (RpcException e)
        {
            return e;
        }
        Assert.Fail("the call succeeded");
        throw new InvalidOperationException();
    }

    /// <summary>Waits (on an event, not a clock) until <paramref name="count"/> requests are queued.</summary>
    private async Task WaitForQueuedAsync(int count)
    {
        var scheduler = _worker!.Scheduler;
        while (scheduler.Queued < count)
        {
            var enqueued = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            void OnEnqueued() => enqueued.TrySetResult();
            scheduler.Enqueued += OnEnqueued;
            try
            {
                if (scheduler.Queued >= count) break;
                await enqueued.Task.WaitAsync(TimeSpan.FromSeconds(5));
            }
            finally
            {
                scheduler.Enqueued -= OnEnqueued;
            }
        }
    }

    [Test]
    public async Task Start_AnnouncesProcessorAndEveryModelTopic()
    {
        var topics = await StartAsync(new ControlledEngine("alpha", "beta"));

        Assert.That(topics, Is.EquivalentTo(new[] { WorkerTopics.Processor, WorkerTopics.Model("alpha"), WorkerTopics.Model("beta") }));
        Assert.That(_worker!.Role, Is.EqualTo("processor"));
    }

    [Test]
    public async Task Infer_ReturnsGeneratedText_WithTheCallersRequestIdAndTheProcessor()
    {
        using var engine = Builtin();
        await StartAsync(engine);

        var response = await InferAsync(new InferRequest
        {
            RequestId = "req-1", Model = BuiltinEngineOptions.DefaultModelName, Prompt = "The cat", MaxTokens = 5, Seed = 7,
        });

        Assert.That(response.RequestId, Is.EqualTo("req-1"));
        Assert.That(response.Model, Is.EqualTo(BuiltinEngineOptions.DefaultModelName));
        Assert.That(response.Text, Is.Not.Empty);
        Assert.That(response.Tokens, Is.InRange(1, 5));
        Assert.That(response.FinishReason, Is.EqualTo("length"));
        Assert.That(response.Processor, Is.EqualTo(_identity.PeerId.ToString()));
    }

    [Test]
    public async Task InferStream_SendsOneChunkPerToken_InOrder_TheLastWithTheFinishReason()
    {
        using var engine = Builtin();
        await StartAsync(engine);
        var request = new InferRequest { Model = BuiltinEngineOptions.DefaultModelName, Prompt = "The dog", MaxTokens = 6, Seed = 3 };

        var chunks = await StreamAsync(request);
        var whole = await InferAsync(request);

        Assert.That(chunks.Select(c => c.Index), Is.EqualTo(Enumerable.Range(0, chunks.Count)));
        Assert.That(chunks[^1].FinishReason, Is.EqualTo("length"));
        Assert.That(chunks.Take(chunks.Count - 1).Select(c => c.FinishReason), Is.All.Empty);
        Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo(whole.Text), "same seed, same text, streamed or not");
        Assert.That(chunks.Select(c => c.RequestId).Distinct().Single(), Is.Not.Empty);
    }

    [Test]
    public async Task Status_ReportsRunningQueuedLimitsAndModels()
    {
        var engine = new ControlledEngine("m1", "m2");
        await StartAsync(engine, new ProcessorOptions { MaxConcurrency = 1, MaxQueue = 3 });
        var running = InferAsync(Request());
        var first = await engine.NextStartedAsync();
        var queued = InferAsync(Request());
        await WaitForQueuedAsync(1);

        var status = await StatusAsync();

        Assert.That((status.Active, status.Queued, status.MaxConcurrency, status.MaxQueue), Is.EqualTo((1, 1, 1, 3)));
        Assert.That(status.Models.Select(m => m.Name), Is.EqualTo(new[] { "m1", "m2" }));
        Assert.That(status.Models[0].MaxTokens, Is.EqualTo(100));
        first.Finish("a");
        (await engine.NextStartedAsync()).Finish("b");
        await Task.WhenAll(running, queued);
        Assert.That((await StatusAsync()).Active, Is.Zero);
    }

    [Test]
    public async Task Infer_RunsAtMostMaxConcurrency_QueuesInOrder_AndTurnsAwayPastTheQueue()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine, new ProcessorOptions { MaxConcurrency = 2, MaxQueue = 2, QueueFullRetryAfter = TimeSpan.FromSeconds(3) });
        // Each request's prompt is its id, so the test can tell generations apart whatever order a and b arrive in.
        var a = InferAsync(Request(id: "a", prompt: "a"));
        var b = InferAsync(Request(id: "b", prompt: "b"));
        var started = new[] { await engine.NextStartedAsync(), await engine.NextStartedAsync() }.ToDictionary(g => g.Request.Prompt!);
        var c = InferAsync(Request(id: "c", prompt: "c"));
        await WaitForQueuedAsync(1);
        var d = InferAsync(Request(id: "d", prompt: "d"));
        await WaitForQueuedAsync(2);

        var turnedAway = await FailureOf(InferAsync(Request(id: "e", prompt: "e")));

        Assert.That(turnedAway.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(turnedAway.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(3)));
        Assert.That(engine.StartedCount, Is.EqualTo(2), "only MaxConcurrency generations run");

        started["b"].Finish("B");
        var gc = await engine.NextStartedAsync();
        Assert.That(gc.Request.Prompt, Is.EqualTo("c"), "the first queued runs first");
        started["a"].Finish("A");
        var gd = await engine.NextStartedAsync();
        Assert.That(gd.Request.Prompt, Is.EqualTo("d"));
        gc.Finish("C");
        gd.Finish("D");
        var texts = await Task.WhenAll(a, b, c, d);
        Assert.That(texts.Select(r => r.RequestId + r.Text), Is.EqualTo(new[] { "aA", "bB", "cC", "dD" }));
    }

    [Test]
    public async Task QueuedRequest_LeavesTheQueue_WhenItsCallerCancels()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine, new ProcessorOptions { MaxConcurrency = 1, MaxQueue = 1 });
        var running = InferAsync(Request(id: "running"));
        var first = await engine.NextStartedAsync();
        using var cts = new CancellationTokenSource();
        var waiting = InferAsync(Request(id: "waiting"), cts.Token);
        await WaitForQueuedAsync(1);

        await cts.CancelAsync();
        Assert.That(async () => await waiting, Throws.InstanceOf<OperationCanceledException>());
        while (_worker!.Queued > 0) await Task.Yield();

        var next = InferAsync(Request(id: "next"));
        await WaitForQueuedAsync(1);
        first.Finish("x");
        var second = await engine.NextStartedAsync();
        second.Finish("y");
        Assert.That((await next).RequestId, Is.EqualTo("next"), "the cancelled request never ran and its place went to the next caller");
        Assert.That(engine.StartedCount, Is.EqualTo(2));
        await running;
    }

    [Test]
    public async Task Infer_CallerCancellation_ReachesTheEngine_AndFreesTheSlot()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine, new ProcessorOptions { MaxConcurrency = 1 });
        using var cts = new CancellationTokenSource();
        var call = InferAsync(Request(), cts.Token);
        var generation = await engine.NextStartedAsync();
        generation.Emit("partial ");

        await cts.CancelAsync();

        await generation.Cancelled.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(async () => await call, Throws.InstanceOf<OperationCanceledException>());
        var after = InferAsync(Request(id: "after"));
        (await engine.NextStartedAsync()).Finish("ok");
        Assert.That((await after).Text, Is.EqualTo("ok"));
    }

    [Test]
    public async Task InferStream_StoppingTheEnumeration_CancelsTheEngine()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine);
        var stream = _caller.RequestStreamAsync(_identity.PeerId, WorkerMethods.Processor.InferStream, Request(), InferChunk.Parser).GetAsyncEnumerator();
        var moved = stream.MoveNextAsync();
        var generation = await engine.NextStartedAsync();
        generation.Emit("one");
        Assert.That(await moved, Is.True);
        Assert.That(stream.Current.Text, Is.EqualTo("one"));

        await stream.DisposeAsync();

        await generation.Cancelled.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Test]
    public async Task Infer_FromAPeerNotOnTheAllowList_IsPermissionDenied_WhileAllowedPeersAreServed()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine, new ProcessorOptions { AllowedPeers = [_caller.PeerId.ToString()] });
        await using var stranger = _network.CreateNode();

        var denied = await FailureOf(InferAsync(Request(), from: stranger));
        var deniedStream = await FailureOf(Task.Run(async () =>
        {
            await foreach (var _ in stranger.RequestStreamAsync(_identity.PeerId, WorkerMethods.Processor.InferStream, Request(), InferChunk.Parser))
            {
            }
        }));
        var allowed = InferAsync(Request());
        (await engine.NextStartedAsync()).Finish("fine");

        Assert.That(denied.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
        Assert.That(deniedStream.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
        Assert.That((await allowed).Text, Is.EqualTo("fine"));
        Assert.That(engine.StartedCount, Is.EqualTo(1));
    }

    [Test]
    public async Task MalformedPayload_IsInvalidArgument_AndTheWorkerKeepsServing()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine);
        var random = TestSeed.CreateRandom();
        byte[][] payloads =
        [
            [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], // a length prefix near 2^63
            [0x12, 0x10, 0x61], // truncated string
            [0xFF],
            [.. Enumerable.Range(0, 64).Select(_ => (byte)random.Next(256))],
        ];

        foreach (var payload in payloads)
        {
            var unary = await FailureOf(_caller.RequestAsync(_identity.PeerId, WorkerMethods.Processor.Infer, payload, null, CancellationToken.None));
            Assert.That(unary.Code, Is.EqualTo(RpcStatusCode.InvalidArgument), Convert.ToHexString(payload));
        }
        var streamed = await FailureOf(Task.Run(async () =>
        {
            await foreach (var _ in _caller.RequestStreamAsync(_identity.PeerId, WorkerMethods.Processor.InferStream, payloads[0], null, CancellationToken.None))
            {
            }
        }));
        Assert.That(streamed.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));

        var good = InferAsync(Request());
        (await engine.NextStartedAsync()).Finish("still serving");
        Assert.That((await good).Text, Is.EqualTo("still serving"));
        Assert.That(engine.StartedCount, Is.EqualTo(1), "no malformed request reached the engine");
    }

    [Test]
    public async Task ChatRequest_ReachesTheEngineAsMessages_WithTopP()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine);
        var request = new InferRequest
        {
            Model = "m1", MaxTokens = 5, TopP = 0.5,
            Messages = { new InferMessage { Role = "system", Content = "Be brief." }, new InferMessage { Role = "user", Content = "hi" } },
        };

        var call = InferAsync(request);
        var generation = await engine.NextStartedAsync();
        generation.Finish("hello");
        var response = await call;

        Assert.Multiple(() =>
        {
            Assert.That(generation.Request.Messages!.Select(m => (m.Role, m.Content)), Is.EqualTo(new[] { ("system", "Be brief."), ("user", "hi") }));
            Assert.That(generation.Request.Prompt, Is.Null);
            Assert.That(generation.Request.TopP, Is.EqualTo(0.5));
            Assert.That(response.Text, Is.EqualTo("hello"));
            Assert.That(response.CompletionTokens, Is.EqualTo(1), "an engine that counts nothing: the pieces it produced");
        });
    }

    [Test]
    public async Task UsageAndTiming_ComeWithTheResponse_AndTheLastStreamedChunk()
    {
        using var engine = Builtin();
        await StartAsync(engine);
        var request = new InferRequest { Model = BuiltinEngineOptions.DefaultModelName, Prompt = "The dog sat", MaxTokens = 4, Seed = 3 };

        var whole = await InferAsync(request);
        var chunks = await StreamAsync(request);

        Assert.Multiple(() =>
        {
            Assert.That(whole.PromptTokens, Is.EqualTo(3));
            Assert.That(whole.CompletionTokens, Is.EqualTo(4));
            Assert.That(whole.Tokens, Is.EqualTo(4));
            Assert.That(whole.GenerationMs, Is.GreaterThanOrEqualTo(0));
            Assert.That(chunks[^1].PromptTokens, Is.EqualTo(3));
            Assert.That(chunks[^1].CompletionTokens, Is.EqualTo(4));
            Assert.That(chunks.Take(chunks.Count - 1).Select(c => c.CompletionTokens), Is.All.Zero);
        });
    }

    [TestCase("tool", "hi", "", "role")]
    [TestCase("user", "hi", "also a prompt", "not both")]
    [TestCase("user", "   ", "", "prompt is empty")]
    public async Task BadChat_IsInvalidArgument_BeforeReachingTheEngine(string role, string content, string prompt, string message)
    {
        var engine = new ControlledEngine();
        await StartAsync(engine);

        var error = await FailureOf(InferAsync(new InferRequest { Model = "m1", Prompt = prompt, Messages = { new InferMessage { Role = role, Content = content } } }));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(error.Message, Does.Contain(message));
        Assert.That(engine.StartedCount, Is.Zero);
    }

    [Test]
    public async Task HugePrompt_IsInvalidArgument_BeforeReachingTheEngine()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine, new ProcessorOptions { MaxPromptLength = 1000 });

        var error = await FailureOf(InferAsync(Request(prompt: new string('x', 1001))));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(error.Message, Does.Contain("1001").And.Contain("1000"));
        Assert.That(engine.StartedCount, Is.Zero);
    }

    [TestCase("", "hello", 10, "model is required")]
    [TestCase("m1", "   ", 10, "prompt is empty")]
    [TestCase("m1", "hello", -1, "max_tokens")]
    public async Task BadRequest_IsInvalidArgument_WithAClearMessage(string model, string prompt, int maxTokens, string message)
    {
        var engine = new ControlledEngine();
        await StartAsync(engine);

        var error = await FailureOf(InferAsync(new InferRequest { Model = model, Prompt = prompt, MaxTokens = maxTokens }));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(error.Message, Does.Contain(message));
    }

    [Test]
    public async Task OutOfRangeTemperatureAndOverlongRequestId_AreInvalidArgument()
    {
        await StartAsync(new ControlledEngine());

        var temperature = await FailureOf(InferAsync(new InferRequest { Model = "m1", Prompt = "p", Temperature = double.NaN }));
        var id = await FailureOf(InferAsync(Request(id: new string('i', 500))));
        var seed = await FailureOf(InferAsync(new InferRequest { Model = "m1", Prompt = "p", Seed = long.MaxValue }));

        Assert.That(new[] { temperature.Code, id.Code, seed.Code }, Is.All.EqualTo(RpcStatusCode.InvalidArgument));
    }

    [Test]
    public async Task UnknownModel_IsNotFound_AndNamesTheModelsServed()
    {
        await StartAsync(new ControlledEngine("m1", "m2"));

        var error = await FailureOf(InferAsync(Request(model: "gpt-99")));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.NotFound));
        Assert.That(error.Message, Does.Contain("gpt-99").And.Contain("m1, m2"));
    }

    [Test]
    public async Task MaxTokens_IsCappedByMaxTokensCap_AndDefaultsWhenZero()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine, new ProcessorOptions { MaxTokensCap = 50 });

        var capped = InferAsync(new InferRequest { Model = "m1", Prompt = "p", MaxTokens = 90 });
        var cappedGeneration = await engine.NextStartedAsync();
        cappedGeneration.Finish();
        var defaulted = InferAsync(new InferRequest { Model = "m1", Prompt = "p" });
        var defaultedGeneration = await engine.NextStartedAsync();
        defaultedGeneration.Finish();
        await Task.WhenAll(capped, defaulted);

        Assert.That(cappedGeneration.Request.MaxTokens, Is.EqualTo(50));
        Assert.That(defaultedGeneration.Request.MaxTokens, Is.EqualTo(50));
    }

    [Test]
    public async Task MaxTokens_WhenUnset_IsTheModelsOwnLimit_ThatStatusAdvertises()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine, new ProcessorOptions { MaxTokensCap = 1000 });

        var defaulted = InferAsync(new InferRequest { Model = "m1", Prompt = "p" });
        var generation = await engine.NextStartedAsync();
        generation.Finish();
        await defaulted;

        var advertised = (await StatusAsync()).Models.Single(m => m.Name == "m1").MaxTokens;
        Assert.That(generation.Request.MaxTokens, Is.EqualTo(advertised).And.EqualTo(100));
    }

    [TestCase(InferenceErrorKind.ModelNotFound, RpcStatusCode.NotFound)]
    [TestCase(InferenceErrorKind.InvalidRequest, RpcStatusCode.InvalidArgument)]
    [TestCase(InferenceErrorKind.EngineUnavailable, RpcStatusCode.Unavailable)]
    [TestCase(InferenceErrorKind.RateLimited, RpcStatusCode.ResourceExhausted)]
    [TestCase(InferenceErrorKind.Unauthorized, RpcStatusCode.PermissionDenied)]
    [TestCase(InferenceErrorKind.Timeout, RpcStatusCode.DeadlineExceeded)]
    [TestCase(InferenceErrorKind.MalformedResponse, RpcStatusCode.Unavailable)]
    [TestCase(InferenceErrorKind.EngineError, RpcStatusCode.Internal)]
    public async Task EngineFailure_ReachesTheCallerAsItsRpcCode_WithTheTextGeneratedBefore(InferenceErrorKind kind, RpcStatusCode code)
    {
        var engine = new ControlledEngine();
        await StartAsync(engine);
        var call = InferAsync(Request());
        var generation = await engine.NextStartedAsync();
        generation.Emit("so far");
        generation.Fail(new InferenceException(kind, "engine says no") { RetryAfter = TimeSpan.FromSeconds(2) });

        var error = await FailureOf(call);

        Assert.That(error.Code, Is.EqualTo(code));
        // Only faults of the caller's own request keep the engine's words; the model server's are told in fixed text.
        var callersFault = kind is InferenceErrorKind.ModelNotFound or InferenceErrorKind.InvalidRequest;
        Assert.That(error.Message, callersFault ? Does.Contain("engine says no") : Does.Not.Contain("engine says no"));
        Assert.That(error.Details[WorkerMethods.PartialOutputDetail], Is.EqualTo("so far"));
        Assert.That(error.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(2)));
    }

    [TestCase(InferenceErrorKind.EngineUnavailable)]
    [TestCase(InferenceErrorKind.Timeout)]
    [TestCase(InferenceErrorKind.EngineError)]
    [TestCase(InferenceErrorKind.Unauthorized)]
    public async Task EngineFailure_NeverShowsTheModelServersUrlOrCredentials_AndTheNextCallerIsServed(InferenceErrorKind kind)
    {
        var engine = new ControlledEngine();
        await StartAsync(engine);
        var call = InferAsync(Request());
        var generation = await engine.NextStartedAsync();
        generation.Fail(new InferenceException(kind,
            "Cannot reach the model server at http://admin:hunter2@10.1.2.3:11434: Connection refused (/var/lib/llm/socket)"));

        var error = await FailureOf(call);

        Assert.That(error.Message, Does.Not.Contain("hunter2").And.Not.Contain("10.1.2.3").And.Not.Contain("/var/lib"));
        Assert.That(error.Message, Does.Contain("model server"));
        var healthy = InferAsync(Request(prompt: "again"));
        var next = await engine.NextStartedAsync();
        next.Finish("fine");
        Assert.That((await healthy).Text, Is.EqualTo("fine"));
    }

    [Test]
    public async Task InferStream_EngineFailureMidStream_DeliversTheChunksThenTheErrorWithPartialOutput()
    {
        var engine = new ControlledEngine();
        await StartAsync(engine);
        var chunks = new List<string>();
        var call = Task.Run(async () =>
        {
            await foreach (var chunk in _caller.RequestStreamAsync(_identity.PeerId, WorkerMethods.Processor.InferStream, Request(), InferChunk.Parser))
                chunks.Add(chunk.Text);
        });
        var generation = await engine.NextStartedAsync();
        generation.Emit("a");
        generation.Emit("b");
        generation.Fail(new InvalidOperationException("bug with a secret stack"));

        var error = await FailureOf(call);

        Assert.That(chunks, Is.EqualTo(new[] { "a", "b" }));
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Internal));
        Assert.That(error.Message, Does.Not.Contain("secret"));
        Assert.That(error.Details[WorkerMethods.PartialOutputDetail], Is.EqualTo("ab"));
    }

    [Test]
    public async Task Stop_StopsServing_UnknownMethodAfterwards()
    {
        await StartAsync(new ControlledEngine());
        await _worker!.StopAsync(CancellationToken.None);
        _worker = null;

        var error = await FailureOf(InferAsync(Request()));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.UnknownMethod));
    }

    [Test]
    public void Options_Invalid_AreRejectedWithEveryProblemNamed()
    {
        var options = new ProcessorOptions { MaxConcurrency = 0, MaxQueue = -1, MaxPromptLength = 0, MaxTokensCap = 0, AllowedPeers = ["not-a-peer"] };

        var error = Assert.Throws<ProcessorConfigurationException>(() => _ = new ProcessorWorker(options, new ControlledEngine()));

        Assert.That(error!.Errors, Has.Count.EqualTo(5));
        Assert.That(error.Message, Does.Contain("MaxConcurrency").And.Contain("MaxQueue").And.Contain("not-a-peer"));
    }

    [Test]
    public void Options_BadEngineConfiguration_IsRejectedWhenNoEngineIsGiven()
    {
        var options = new ProcessorOptions { Engine = new EngineOptions { Kind = "quantum" } };

        Assert.That(() => new ProcessorWorker(options), Throws.InstanceOf<EngineConfigurationException>().With.Message.Contain("quantum"));
    }

    [Test]
    public async Task Worker_WithoutAGivenEngine_BuildsTheConfiguredBuiltinEngine()
    {
        _worker = new ProcessorWorker(new ProcessorOptions());
        var topics = await _worker.StartAsync(new WorkerContext
        {
            Identity = _identity,
            Server = _server,
            Client = _server,
            Discovery = Substitute.For<IDiscovery>(),
            Store = Substitute.For<IKeyValueStore>(),
            Time = _time,
            Random = TestSeed.CreateRandom(),
        }, CancellationToken.None);

        Assert.That(topics, Does.Contain(WorkerTopics.Model(BuiltinEngineOptions.DefaultModelName)));
        var response = await InferAsync(new InferRequest { Model = BuiltinEngineOptions.DefaultModelName, Prompt = "Once upon a time", MaxTokens = 3 });
        Assert.That(response.Text, Is.Not.Empty);
    }
}
