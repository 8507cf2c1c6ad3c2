using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;
using static P2PInference.Tests.Unit.Gateway.GatewayHarness;

namespace P2PInference.Tests.Unit.Gateway;

/// <summary>Inference routing: processor choice, fail-over before the first token, partial output after it, cancel, deadlines, bad input.</summary>
[CancelAfter(10_000)]
public sealed class GatewayRoutingTests
{
    private GatewayHarness _h = null!;

    [SetUp]
    public async Task StartAsync() =>
        _h = await GatewayHarness.StartAsync(new GatewayOptions { DefaultRateLimit = new(10_000, 1_000), MaxPromptLength = 1000 });

    [TearDown]
    public async Task StopAsync() => await _h.DisposeAsync();

    [Test]
    public async Task InferStream_DeliversEveryChunk_WithTheRequestIdAndProcessor()
    {
        var processor = await _h.AddProcessorAsync();

        var chunks = await _h.StreamAllAsync(Prompt(requestId: "req-42"));

        Assert.That(chunks.Select(c => c.Text), Is.EqualTo(FakeProcessor.DefaultWords));
        Assert.That(chunks.Last().FinishReason, Is.EqualTo("stop"));
        Assert.That(chunks.Select(c => c.RequestId).Distinct(), Is.EqualTo(new[] { "req-42" }));
        Assert.That(chunks.Select(c => c.Processor).Distinct(), Is.EqualTo(new[] { processor.PeerId.ToString() }));
        var (request, context) = processor.Received.Single();
        Assert.That(request.RequestId, Is.EqualTo("req-42"));
        Assert.That(context.RequestId, Is.EqualTo("req-42"), "the processor's logs show the same id");
    }

    [Test]
    public async Task Infer_WithoutRequestId_GetsOneMadeByTheGateway_ThatEveryHopSees()
    {
        var processor = await _h.AddProcessorAsync();

        var response = await _h.InferAsync(Prompt());

        Assert.That(response.RequestId, Does.StartWith("gw-"));
        Assert.That(processor.Received.Single().Request.RequestId, Is.EqualTo(response.RequestId));
        Assert.That(processor.Received.Single().Context.RequestId, Is.EqualTo(response.RequestId));
        Assert.That(_h.Auth.Calls.Single().Context.RequestId, Is.EqualTo(response.RequestId));
    }

    [Test]
    public async Task Infer_LowersMaxTokensToTheCap_AndFillsTheDefaultModel()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { MaxTokensCap = 8, DefaultModel = "m1" });
        var processor = await h.AddProcessorAsync();

        await h.InferAsync(new InferRequest { Prompt = "hi", MaxTokens = 1000 });

        var request = processor.Received.Single().Request;
        Assert.That(request.MaxTokens, Is.EqualTo(8));
        Assert.That(request.Model, Is.EqualTo("m1"));
    }

    [Test]
    public async Task Infer_WithoutMaxTokens_ForwardsTheModelLimitTheProcessorAdvertises()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { MaxTokensCap = 1024, DefaultModel = "m1" });
        var processor = await h.AddProcessorAsync();

        await h.InferAsync(new InferRequest { Prompt = "hi" });

        Assert.That(processor.Received.Single().Request.MaxTokens, Is.EqualTo(256), "the fake processor advertises 256 for its models");
    }

    [Test]
    public async Task Infer_WithoutMaxTokens_TheGatewayCapOnlyLowersTheModelLimit()
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { MaxTokensCap = 8, DefaultModel = "m1" });
        var processor = await h.AddProcessorAsync();

        await h.StreamAllAsync(new InferRequest { Prompt = "hi" });

        Assert.That(processor.Received.Single().Request.MaxTokens, Is.EqualTo(8));
    }

    [Test]
    public async Task ProcessorChoice_SpreadsConcurrentStreamsOverTwoProcessors()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var started = new SemaphoreSlim(0);
        const int streams = 10;
        foreach (var p in new[] { a, b })
            p.Stream = (r, c, _) => Held(c.CancellationToken);

        async IAsyncEnumerable<InferChunk> Held([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
        {
            started.Release();
            await release.Task.WaitAsync(ct);
            yield return new InferChunk { Text = "done", FinishReason = "stop" };
        }

        // One at a time, so each choice sees the calls already in flight.
        var calls = new List<Task<List<InferChunk>>>();
        for (var i = 0; i < streams; i++)
        {
            calls.Add(_h.StreamAllAsync(Prompt()));
            await started.WaitAsync(Token);
        }
        release.SetResult();
        await Task.WhenAll(calls);

        Assert.That(a.StreamCalls, Is.EqualTo(5));
        Assert.That(b.StreamCalls, Is.EqualTo(5));
    }

    [Test]
    public async Task FirstProcessorFailsBeforeTheFirstToken_AnotherServes_AndTheClientSeesACompleteStream()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        // Whichever is chosen first fails.
        var calls = 0;
        foreach (var p in new[] { a, b })
            p.Stream = (r, c, _) => Interlocked.Increment(ref calls) == 1
                ? FakeProcessor.WordsThenFail(r, [], new RpcException(RpcStatusCode.Unavailable, "engine crashed"))
                : FakeProcessor.Words(r, FakeProcessor.DefaultWords, c.CancellationToken);

        var chunks = await _h.StreamAllAsync(Prompt());

        Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo("Hello wide world!"));
        Assert.That(a.StreamCalls + b.StreamCalls, Is.EqualTo(2));
        Assert.That(a.StreamCalls, Is.EqualTo(1), "one attempt on each processor");
    }

    [Test]
    public async Task CrashedProcessor_IsFailedOverAndAvoided_AfterwardsOnlyTheLiveOneIsCalled()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        await _h.StreamAllAsync(Prompt()); // the gateway now knows both
        _h.Network.Crash(a.PeerId);
        var before = b.StreamCalls;

        for (var i = 0; i < 4; i++)
            Assert.That((await _h.StreamAllAsync(Prompt())).Count, Is.EqualTo(FakeProcessor.DefaultWords.Length));

        Assert.That(b.StreamCalls - before, Is.EqualTo(4));
    }

    [Test]
    public async Task UnaryInfer_FailsOverToAnotherProcessor_WhenOneIsBusy()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        var calls = 0;
        foreach (var p in new[] { a, b })
            p.Unary = (r, _) => Interlocked.Increment(ref calls) == 1
                ? throw RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "queue full", TimeSpan.FromSeconds(1))
                : new InferResponse { Text = "ok", FinishReason = "stop" };

        var response = await _h.InferAsync(Prompt());

        Assert.That(response.Text, Is.EqualTo("ok"));
        Assert.That(a.InferCalls + b.InferCalls, Is.EqualTo(2));
    }

    [Test]
    public async Task FailureAfterTheFirstToken_EndsTheStreamWithThePartialOutput_WithoutFailOver()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        foreach (var p in new[] { a, b })
            p.Stream = (r, _, _) => FakeProcessor.WordsThenFail(r, ["Once", " upon"], new RpcException(RpcStatusCode.Internal, "GPU fell off"));
        var received = new List<string>();

        var error = await ErrorOf(async () =>
        {
            await foreach (var chunk in _h.StreamAsync(Prompt())) received.Add(chunk.Text);
        });

        Assert.That(received, Is.EqualTo(new[] { "Once", " upon" }));
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Internal));
        Assert.That(error.Message, Does.Contain("GPU fell off"));
        Assert.That(error.Details[WorkerMethods.PartialOutputDetail], Is.EqualTo("Once upon"));
        Assert.That(a.StreamCalls + b.StreamCalls, Is.EqualTo(1));
    }

    [Test]
    public async Task EveryProcessorFails_IsUnavailable_NamingTheLastError()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        foreach (var p in new[] { a, b })
            p.Stream = (r, _, _) => FakeProcessor.WordsThenFail(r, [], new RpcException(RpcStatusCode.Unavailable, "engine down"));

        var error = await ErrorOf(() => _h.StreamAllAsync(Prompt()));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.Message, Does.Contain("m1").And.Contain("engine down"));
        Assert.That(a.StreamCalls + b.StreamCalls, Is.EqualTo(2));
        Assert.That(error.NotDelivered, Is.False, "a processor failing before its first chunk may have run the generation: the client must not resend it");
    }

    [Test]
    public async Task EveryProcessorBusy_IsNotMarkedNotDelivered_SoClientsDoNotCarryTheLoadRoundEveryGateway()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        var busy = RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "queue full", TimeSpan.FromSeconds(1));
        foreach (var p in new[] { a, b }) p.Unary = (_, _) => throw busy;

        var error = await ErrorOf(() => _h.InferAsync(Prompt()));

        Assert.That(error.Message, Does.Contain("2 tried").And.Contain("queue full"));
        Assert.That(error.NotDelivered, Is.False);
        Assert.That(error.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(1)), "the processors' retry-after travels on");
    }

    [Test]
    public async Task EveryProcessorRefusingForLoadBeforeItsHandler_IsNotMarkedNotDelivered_EitherThoughNothingRan()
    {
        // As a processor's RPC server refuses a caller over its concurrency limit: unread, but every gateway would meet it.
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        foreach (var p in new[] { a, b })
        {
            p.Unary = (_, _) => throw RpcException.RefusedBeforeAnyWork(RpcStatusCode.ResourceExhausted, "too many calls");
            p.Stream = (r, _, _) => FakeProcessor.WordsThenFail(r, [], RpcException.RefusedBeforeAnyWork(RpcStatusCode.ResourceExhausted, "too many calls"));
        }

        var unary = await ErrorOf(() => _h.InferAsync(Prompt()));
        var stream = await ErrorOf(() => _h.StreamAllAsync(Prompt()));

        Assert.That(new[] { unary, stream }.Select(e => (e.Code, e.NotDelivered)),
            Is.EqualTo(new[] { (RpcStatusCode.Unavailable, false), (RpcStatusCode.Unavailable, false) }));
        Assert.That(unary.Message, Does.Contain("too many calls"));
    }

    [Test]
    public async Task EveryProcessorUnreachable_IsARefusalBeforeAnyWork_SoTheClientMayTryAnotherGateway()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        await _h.InferAsync(Prompt());
        _h.Network.Crash(a.PeerId);
        _h.Network.Crash(b.PeerId);

        var unary = await ErrorOf(() => _h.InferAsync(Prompt()));
        var stream = await ErrorOf(() => _h.StreamAllAsync(Prompt()));

        Assert.Multiple(() =>
        {
            foreach (var error in new[] { unary, stream })
            {
                Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
                Assert.That(error.Message, Does.Contain("'m1'"));
                Assert.That(error.NotDelivered, Is.True, $"no processor got the request, so this gateway did none of its work: {error.Message}");
            }
        });
    }

    [Test]
    public async Task ProcessorRefusingTheRequest_IsNotRetriedElsewhere()
    {
        var a = await _h.AddProcessorAsync();
        var b = await _h.AddProcessorAsync();
        foreach (var p in new[] { a, b })
            p.Stream = (r, _, _) => FakeProcessor.WordsThenFail(r, [], new RpcException(RpcStatusCode.InvalidArgument, "stop sequence too long"));

        var error = await ErrorOf(() => _h.StreamAllAsync(Prompt()));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(a.StreamCalls + b.StreamCalls, Is.EqualTo(1));
    }

    [Test]
    public async Task NoProcessorForTheModel_IsUnavailable_NamingTheModel()
    {
        await _h.AddProcessorAsync("m1");

        var unary = await ErrorOf(() => _h.InferAsync(Prompt(model: "llama-99")));
        var stream = await ErrorOf(() => _h.StreamAllAsync(Prompt(model: "llama-99")));

        Assert.That(unary.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(unary.Message, Is.EqualTo("no processor serves model 'llama-99'"));
        Assert.That(stream.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(stream.Message, Is.EqualTo("no processor serves model 'llama-99'"));
        // Another gateway reads the same DHT: a mistyped model must not send each call round them all.
        Assert.That(new[] { unary.NotDelivered, stream.NotDelivered }, Has.All.False);
    }

    [Test]
    public async Task ProcessorJoiningLater_IsFound_AfterAllKnownOnesFailed()
    {
        var a = await _h.AddProcessorAsync();
        await _h.StreamAllAsync(Prompt());
        _h.Network.Crash(a.PeerId);
        var b = await _h.AddProcessorAsync();

        var chunks = await _h.StreamAllAsync(Prompt());

        Assert.That(chunks, Has.Count.EqualTo(FakeProcessor.DefaultWords.Length));
        Assert.That(b.StreamCalls, Is.EqualTo(1));
    }

    [Test]
    public async Task CancelById_StopsTheProcessorsWork_AndEndsTheClientsStreamWithCancelled()
    {
        var processor = await _h.AddProcessorAsync();
        processor.Stream = (r, c, _) => processor.WordsThenWait(r, ["Once"], c.CancellationToken);
        await using var stream = _h.StreamAsync(Prompt(requestId: "long-1")).GetAsyncEnumerator();
        Assert.That(await stream.MoveNextAsync(), Is.True);

        var otherUser = "ApiKey " + _h.Auth.AddApiKey("user-other");
        var foreign = await _h.CallAsync(WorkerMethods.Gateway.Cancel, new CancelRequest { RequestId = "long-1" }, CancelResponse.Parser, otherUser);
        var own = await _h.CallAsync(WorkerMethods.Gateway.Cancel, new CancelRequest { RequestId = "long-1" }, CancelResponse.Parser, _h.KeyCredential);

        Assert.That(foreign.Cancelled, Is.False, "another user cannot cancel it");
        Assert.That(own.Cancelled, Is.True);
        await processor.CallCancelled.Task.WaitAsync(Token);
        var error = await ErrorOf(async () => await stream.MoveNextAsync());
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Cancelled));
        Assert.That(error.Details[WorkerMethods.PartialOutputDetail], Is.EqualTo("Once"));
        var again = await _h.CallAsync(WorkerMethods.Gateway.Cancel, new CancelRequest { RequestId = "long-1" }, CancelResponse.Parser, _h.KeyCredential);
        Assert.That(again.Cancelled, Is.False, "it is no longer running");
    }

    [Test]
    public async Task StoppingTheGateway_EndsARunningStream_AsUnavailable_NotAsTheClientsCancel()
    {
        var processor = await _h.AddProcessorAsync();
        processor.Stream = (r, c, _) => processor.WordsThenWait(r, ["Once"], c.CancellationToken);
        await using var stream = _h.StreamAsync(Prompt(requestId: "long-2")).GetAsyncEnumerator();
        Assert.That(await stream.MoveNextAsync(), Is.True);

        await _h.Worker.StopAsync(Token);

        await processor.CallCancelled.Task.WaitAsync(Token);
        var error = await ErrorOf(async () => await stream.MoveNextAsync());
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable), error.Message);
        Assert.That(error.Message, Does.Contain("gateway stopped"));
        Assert.That(error.Details[WorkerMethods.PartialOutputDetail], Is.EqualTo("Once"));
    }

    [Test]
    public async Task CancelById_OfAUnaryCall_ReachesTheProcessor()
    {
        var processor = await _h.AddProcessorAsync();
        var handlerStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        processor.Node.Respond(WorkerMethods.Processor.Infer, async (_, context) =>
        {
            handlerStarted.TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, context.CancellationToken);
            }
            finally
            {
                handlerCancelled.TrySetResult();
            }
            return ReadOnlyMemory<byte>.Empty;
        });
        var call = _h.InferAsync(Prompt(requestId: "u-1"));
        await handlerStarted.Task.WaitAsync(Token);

        var cancel = await _h.CallAsync(WorkerMethods.Gateway.Cancel, new CancelRequest { RequestId = "u-1" }, CancelResponse.Parser, _h.KeyCredential);

        Assert.That(cancel.Cancelled, Is.True);
        var error = await ErrorOf(() => call);

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Cancelled));
        await handlerCancelled.Task.WaitAsync(Token);
    }

    [Test]
    public async Task DuplicateRunningRequestId_IsAlreadyExists()
    {
        var processor = await _h.AddProcessorAsync();
        processor.Stream = (r, c, _) => processor.WordsThenWait(r, ["x"], c.CancellationToken);
        await using var first = _h.StreamAsync(Prompt(requestId: "dup")).GetAsyncEnumerator();
        Assert.That(await first.MoveNextAsync(), Is.True);

        var error = await ErrorOf(() => _h.StreamAllAsync(Prompt(requestId: "dup")));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.AlreadyExists));
    }

    [Test]
    public async Task ClientDeadline_ReachesTheProcessor_NoLaterThanTheClients()
    {
        var processor = await _h.AddProcessorAsync();
        var clientDeadline = _h.Time.GetUtcNow() + TimeSpan.FromSeconds(20);

        await _h.StreamAllAsync(Prompt(), options: new RpcCallOptions { Timeout = TimeSpan.FromSeconds(20) });
        await _h.InferAsync(Prompt(), options: new RpcCallOptions { Timeout = TimeSpan.FromSeconds(20) });

        Assert.That(processor.Received.Select(r => r.Context.Deadline), Has.All.Not.Null.And.All.LessThanOrEqualTo(clientDeadline));
    }

    [Test]
    public void DeadlinePassingMidStream_EndsTheStreamWithDeadlineExceeded() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { DefaultRateLimit = new(10_000, 1_000), MaxPromptLength = 1000 }, time: sim.Clock);
        var processor = await h.AddProcessorAsync();
        processor.Stream = (r, c, _) => processor.WordsThenWait(r, ["a"], c.CancellationToken);
        await using var stream = h.StreamAsync(Prompt(), options: new RpcCallOptions { Timeout = TimeSpan.FromSeconds(5) }).GetAsyncEnumerator();
        Assert.That(await stream.MoveNextAsync(), Is.True);

        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(5));
        var error = await ErrorOf(async () => await stream.MoveNextAsync());

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded));
        await processor.CallCancelled.Task.WaitOrCancelAsync(Token);
    });

    [Test]
    public void ProcessorStatusSlowerThanTheCacheTtl_IsNotAskedAgain_ByTheNextRequest() => SimulationTest.Run(async sim =>
    {
        await using var h = await GatewayHarness.StartAsync(new GatewayOptions { DefaultRateLimit = new(10_000, 1_000), MaxPromptLength = 1000 }, time: sim.Clock);
        var processor = await h.AddProcessorAsync();
        // Slower than the picker's cache TTL (5 s), within the status call's own deadline (10 s).
        processor.StatusDelay = h.Options.ProcessorCacheTtl + TimeSpan.FromSeconds(2);

        await h.InferAsync(Prompt());
        var started = sim.Clock.GetTimestamp();
        await h.InferAsync(Prompt());
        var secondTook = sim.Clock.GetElapsedTime(started);

        Assert.Multiple(() =>
        {
            Assert.That(processor.StatusCalls, Is.EqualTo(1), "the processors found by the slow fetch are used for the cache TTL after it ended");
            Assert.That(secondTook, Is.EqualTo(TimeSpan.Zero));
            Assert.That(processor.InferCalls, Is.EqualTo(2));
        });
    });

    [Test]
    public async Task MalformedPayload_IsInvalidArgument_AndTheNextCallIsServed()
    {
        await _h.AddProcessorAsync();

        var garbage = await ErrorOf(() => _h.CallRawAsync(WorkerMethods.Gateway.Infer, [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], _h.KeyCredential));
        var truncated = await ErrorOf(() => _h.CallRawAsync(WorkerMethods.Gateway.Infer, Prompt().ToByteArray()[..5], _h.KeyCredential));

        Assert.That(garbage.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(truncated.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That((await _h.InferAsync(Prompt())).Text, Is.Not.Empty);
    }

    [Test]
    public async Task RandomPayloads_AreAnsweredWithATypedError_AndTheGatewayKeepsServing()
    {
        await _h.AddProcessorAsync();
        var random = P2PInference.TestKit.TestSeed.CreateRandom();
        for (var i = 0; i < 50; i++)
        {
            var payload = new byte[random.Next(1, 64)];
            random.NextBytes(payload);
            try
            {
                await _h.CallRawAsync(WorkerMethods.Gateway.Infer, payload, _h.KeyCredential);
            }
            catch (RpcException e)
            {
                Assert.That(e.Code, Is.AnyOf(RpcStatusCode.InvalidArgument, RpcStatusCode.Unavailable), e.Message);
            }
        }
        Assert.That((await _h.InferAsync(Prompt())).Text, Is.Not.Empty);
    }

    [Test]
    public async Task HugePrompt_IsInvalidArgument_BeforeAnyProcessorIsCalled()
    {
        var processor = await _h.AddProcessorAsync();

        var tooLong = await ErrorOf(() => _h.StreamAllAsync(Prompt(new string('x', 1001))));
        var huge = await ErrorOf(() => _h.StreamAllAsync(Prompt(new string('x', 1_000_000))));

        Assert.That(tooLong.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(tooLong.Message, Does.Contain("1001 characters"));
        Assert.That(huge.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(processor.StreamCalls, Is.Zero);
        Assert.That((await _h.StreamAllAsync(Prompt(new string('x', 1000)))).Count, Is.EqualTo(FakeProcessor.DefaultWords.Length));
    }

    [TestCase("", "prompt")]
    [TestCase("m1", "max_tokens")]
    [TestCase("bad model!", "model")]
    [TestCase("m1", "temperature")]
    [TestCase("m1", "request_id")]
    [TestCase("m1", "stop")]
    public async Task InvalidField_IsInvalidArgument_NamingIt(string model, string field)
    {
        await _h.AddProcessorAsync();
        var request = Prompt(model: model.Length == 0 ? "m1" : model);
        switch (field)
        {
            case "prompt": request.Prompt = " "; break;
            case "max_tokens": request.MaxTokens = -1; break;
            case "temperature": request.Temperature = double.NaN; break;
            case "request_id": request.RequestId = "has space"; break;
            case "stop": request.Stop.Add(new string('s', 300)); break;
        }

        var error = await ErrorOf(() => _h.InferAsync(request));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(error.Message, Does.Contain(field));
    }

    [Test]
    public async Task Models_AggregatesTheProcessorsStatus_WithProcessorCounts_AndIsCachedBriefly()
    {
        await _h.AddProcessorAsync("m1");
        await _h.AddProcessorAsync("m1", "m2");

        var models = await _h.CallAsync(WorkerMethods.Gateway.Models, new ModelsRequest(), ModelsResponse.Parser);
        await _h.AddProcessorAsync("m3");
        var cached = await _h.CallAsync(WorkerMethods.Gateway.Models, new ModelsRequest(), ModelsResponse.Parser);
        _h.Time.Advance(_h.Options.ModelsCacheTtl + TimeSpan.FromSeconds(30)); // past both caches: the gateway's and the RPC node's topic cache
        var later = await _h.CallAsync(WorkerMethods.Gateway.Models, new ModelsRequest(), ModelsResponse.Parser);

        Assert.That(models.Models.Select(m => (m.Name, m.Processors)), Is.EqualTo(new[] { ("m1", 2), ("m2", 1) }));
        Assert.That(models.Models[0].Description, Is.EqualTo("model m1"));
        Assert.That(cached.Models, Has.Count.EqualTo(2));
        Assert.That(later.Models.Select(m => m.Name), Is.EqualTo(new[] { "m1", "m2", "m3" }));
    }

    [Test]
    public async Task Stop_StopsServing()
    {
        await _h.Worker.StopAsync(Token);

        var error = await ErrorOf(() => _h.InferAsync(Prompt()));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.UnknownMethod));
    }
}
