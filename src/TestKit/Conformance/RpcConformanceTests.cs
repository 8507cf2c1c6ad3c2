using System.Runtime.CompilerServices;
using System.Text;
using NUnit.Framework;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.TestKit.Conformance;

/// <summary>
/// The behaviour every <see cref="IRpcClient"/>/<see cref="IRpcServer"/> must have (docs/architecture.md):
/// derive a fixture that says how to make a node, and the whole suite runs on it. This repository
/// runs it on the real <see cref="RpcNode"/> (over TCP loopback and the in-memory network) and on
/// the <see cref="InMemoryRpcNetwork"/> twin. Each test runs as a simulation (<see cref="SimulationTest"/>)
/// whose clock is <see cref="Time"/>: deadlines pass when a test advances it, never on the wall clock.
/// A fixture over real sockets sets <see cref="Simulated"/> to false and runs on the thread pool with
/// a manual clock instead.
/// </summary>
[TestFixture]
public abstract class RpcConformanceTests
{
    protected const string Topic = "p2pinference/conformance";

    /// <summary>Guards against hangs only (virtual time in a simulation); no test waits for it to pass.</summary>
    private static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(60);

    private readonly List<RpcConformanceNode> _nodes = [];
    private CancellationToken _testToken;
    private Random _random = null!;

    /// <summary>The test's clock: the simulation's, or (with <see cref="Simulated"/> false) a manual one.</summary>
    protected FakeTimeProvider Time { get; private set; } = null!;

    /// <summary>The topic registry the nodes' discovery reads; tests announce providers in it.</summary>
    protected TopicTable Topics { get; private set; } = null!;

    /// <summary>Guards against hangs only; no test waits for it to pass.</summary>
    protected CancellationToken TestToken => _testToken;

    /// <summary>Calls made at once by the many-calls test; a slow stack may lower it.</summary>
    protected virtual int ManyCalls => 10_000;

    /// <summary>
    /// True (the default) when the nodes are fully simulated and each test runs on the simulation
    /// executor; false for real I/O (sockets), which must not run inside a simulation.
    /// </summary>
    protected virtual bool Simulated => true;

    /// <summary>
    /// A started node called <paramref name="name"/> using <paramref name="options"/> (whose
    /// TimeProvider is <see cref="Time"/>) and <paramref name="discovery"/>, able to call every node
    /// created before it and be called by them.
    /// </summary>
    protected abstract Task<RpcConformanceNode> CreateNodeAsync(string name, RpcOptions options, IDiscovery discovery);

    /// <summary>Kills <paramref name="node"/> abruptly: its connections die, it answers nothing more.</summary>
    protected abstract Task CrashAsync(RpcConformanceNode node);

    /// <summary>Disposes whatever the fixture made besides the nodes; runs at the end of each test, on its clock.</summary>
    protected virtual Task OnTearDownAsync() => Task.CompletedTask;

    /// <summary>
    /// Runs one test's body with fresh nodes, clock and topics, then disposes what it made: in a
    /// simulation, or on real threads when <see cref="Simulated"/> is false.
    /// </summary>
    protected Task RunTestAsync(Func<Task> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (!Simulated) return RunOnRealThreadsAsync(body);
        SimulationTest.Run(async sim =>
        {
            using var timeout = new CancellationTokenSource(TestTimeout, sim.Clock);
            await RunBodyAsync(body, sim.Clock, sim.CreateRandom("rpc-conformance"), timeout.Token);
        });
        return Task.CompletedTask;
    }

    private async Task RunOnRealThreadsAsync(Func<Task> body)
    {
        using var timeout = new CancellationTokenSource(TestTimeout);
        await RunBodyAsync(body, new FakeTimeProvider(), new Random(TestSeed.Choose()), timeout.Token);
    }

    private async Task RunBodyAsync(Func<Task> body, FakeTimeProvider time, Random random, CancellationToken testToken)
    {
        Time = time;
        Topics = new TopicTable();
        _random = random;
        _testToken = testToken;
        try
        {
            await body();
        }
        finally
        {
            foreach (var node in Enumerable.Reverse(_nodes)) await node.DisposeAsync();
            _nodes.Clear();
            await OnTearDownAsync();
        }
    }

    /// <summary>
    /// Moves <see cref="Time"/> forward; in a simulation, returns once what the due timers started has run.
    /// On real threads it first waits for <see cref="WhenSettledAsync"/>.
    /// </summary>
    protected async Task AdvanceAsync(TimeSpan delta)
    {
        if (Time is SimulationClock clock)
        {
            await clock.AdvanceAsync(delta);
            return;
        }
        await WhenSettledAsync();
        Time.Advance(delta);
    }

    /// <summary>
    /// On real threads (<see cref="Simulated"/> false), completes once the nodes' own background work
    /// that runs beside the test's calls has ended; <see cref="AdvanceAsync"/> waits for it before
    /// moving the manual clock. That clock jumps at once and fires every timer due in the jump, the
    /// timeouts of work still in flight included, which real time would have let finish: a fixture
    /// whose nodes start such work (a host's identify exchange on each new connection) waits for it
    /// here. A simulation needs none of it: its clock moves only when nothing can run.
    /// </summary>
    protected virtual Task WhenSettledAsync() => Task.CompletedTask;

    protected RpcOptions DefaultOptions() => new() { TimeProvider = Time, Random = new Random(_random.Next()) };

    protected async Task<RpcConformanceNode> NodeAsync(string name, Func<RpcOptions, RpcOptions>? configure = null)
    {
        var options = DefaultOptions();
        if (configure is not null) options = configure(options);
        var node = await CreateNodeAsync(name, options, Topics);
        _nodes.Add(node);
        return node;
    }

    protected async Task<(RpcConformanceNode Client, RpcConformanceNode Server)> PairAsync(Func<RpcOptions, RpcOptions>? serverOptions = null)
    {
        var server = await NodeAsync("server", serverOptions);
        var client = await NodeAsync("client");
        return (client, server);
    }

    protected static TaskCompletionSource<T> NewSignal<T>() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    protected static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    protected static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    protected static string Text(byte[] bytes) => Encoding.UTF8.GetString(bytes);

    protected static ValueTask<ReadOnlyMemory<byte>> Answer(string text) => ValueTask.FromResult<ReadOnlyMemory<byte>>(Bytes(text));

    protected Task<byte[]> CallAsync(RpcConformanceNode from, RpcConformanceNode to, string method, string request, RpcCallOptions? options = null) =>
        from.Client.RequestAsync(to.PeerId, method, Bytes(request), options, TestToken);

    /// <summary>Every item of <paramref name="items"/>, in order.</summary>
    protected static async Task<List<byte[]>> ReadAllAsync(IAsyncEnumerable<byte[]> items)
    {
        var all = new List<byte[]>();
        await foreach (var item in items) all.Add(item);
        return all;
    }

    protected static async Task<RpcException> FailureOf(Task call)
    {
        try
        {
            await call;
        }
        catch (RpcException e)
        {
            return e;
        }
        Assert.Fail("the call succeeded but was expected to fail");
        throw new InvalidOperationException();
    }

    /// <summary>A handler that signals it started and then waits for its token, reporting what cancelled it.</summary>
    /// <summary>A handler that signals <paramref name="started"/>, waits for <paramref name="release"/>, then answers "held".</summary>
    protected static RpcHandler HoldingHandler(TaskCompletionSource started, TaskCompletionSource release) => async (_, context) =>
    {
        started.TrySetResult();
        await release.Task.WaitOrCancelAsync(context.CancellationToken);
        return Bytes("held");
    };

    protected static RpcHandler BlockingHandler(TaskCompletionSource<RpcCallContext> started, TaskCompletionSource cancelled)
    {
        return async (_, context) =>
        {
            started.TrySetResult(context);
            try
            {
                await Task.Delay(Timeout.InfiniteTimeSpan, context.CancellationToken);
            }
            catch (OperationCanceledException)
            {
                cancelled.TrySetResult();
                throw;
            }
            return Array.Empty<byte>();
        };
    }

    [Test]
    public Task Unary_ReturnsTheHandlersResponse_WithCallerAndMetadataInTheContext() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        RpcCallContext? seen = null;
        server.Server.Respond("echo", (request, context) =>
        {
            seen = context;
            return Answer("echo:" + Text(request.ToArray()));
        });

        var response = await CallAsync(client, server, "echo", "hi",
            new RpcCallOptions { Metadata = new Dictionary<string, string> { ["tenant"] = "t1" }, RequestId = "req-1", TraceId = "trace-1" });

        Assert.That(Text(response), Is.EqualTo("echo:hi"));
        Assert.That(seen!.RemotePeer, Is.EqualTo(client.PeerId));
        Assert.That(seen.Method, Is.EqualTo("echo"));
        Assert.That(seen.Metadata["tenant"], Is.EqualTo("t1"));
        Assert.That(seen.RequestId, Is.EqualTo("req-1"));
        Assert.That(seen.TraceId, Is.EqualTo("trace-1"));
        Assert.That(seen.Deadline, Is.Null, "no timeout was set");
    });

    [Test]
    public Task Unary_EmptyRequestAndResponse_RoundTrip() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("empty", (request, _) => ValueTask.FromResult<ReadOnlyMemory<byte>>(request));

        Assert.That(await client.Client.RequestAsync(server.PeerId, "empty", ReadOnlyMemory<byte>.Empty, null, TestToken), Is.Empty);
    });

    [Test]
    public Task Streaming_DeliversItemsInOrder_ThenEnds() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.RespondStreaming("count", (request, context) => Count(int.Parse(Text(request.ToArray()), System.Globalization.CultureInfo.InvariantCulture), context.CancellationToken));

        var items = new List<string>();
        await foreach (var item in client.Client.RequestStreamAsync(server.PeerId, "count", Bytes("5"), null, TestToken))
            items.Add(Text(item));

        Assert.That(items, Is.EqualTo(new[] { "0", "1", "2", "3", "4" }));

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Count(int n, [EnumeratorCancellation] CancellationToken ct)
        {
            for (var i = 0; i < n; i++)
            {
                await Task.Yield();
                ct.ThrowIfCancellationRequested();
                yield return Bytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
        }
    });

    [Test]
    public Task Streaming_CoalescedItems_ArriveAllAndInOrder_ThenTheEndOrTheError() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var coalesce = new RpcMethodOptions { CoalesceResponses = true };
        // 100-byte items, all ready at once: well past one batch's 32 KiB.
        server.Server.RespondStreaming("burst", (_, _) => Burst(2_000, fail: false), coalesce);
        server.Server.RespondStreaming("burst-then-fail", (_, _) => Burst(50, fail: true), coalesce);

        var items = new List<string>();
        await foreach (var item in client.Client.RequestStreamAsync(server.PeerId, "burst", Bytes(""), null, TestToken)) items.Add(Text(item));
        var before = new List<string>();
        RpcException? failure = null;
        try
        {
            await foreach (var item in client.Client.RequestStreamAsync(server.PeerId, "burst-then-fail", Bytes(""), null, TestToken)) before.Add(Text(item));
        }
        catch (RpcException e)
        {
            failure = e;
        }

        Assert.That(items, Is.EqualTo(Enumerable.Range(0, 2_000).Select(Item)));
        Assert.That(before, Is.EqualTo(Enumerable.Range(0, 50).Select(Item)), "the held items reach the caller before the error");
        Assert.That(failure?.Code, Is.EqualTo(RpcStatusCode.AlreadyExists));

        static string Item(int i) => i.ToString("D100", System.Globalization.CultureInfo.InvariantCulture);

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Burst(int count, bool fail)
        {
            await Task.CompletedTask;
            for (var i = 0; i < count; i++) yield return Bytes(Item(i));
            if (fail) throw new RpcException(RpcStatusCode.AlreadyExists, "after the burst");
        }
    });

    [Test]
    public Task Streaming_CoalescedItems_LeaveBeforeTheHandlerWaits() => RunTestAsync(async () =>
    {
        // Held items must not wait for an item the handler has not made yet.
        var (client, server) = await PairAsync();
        var release = NewSignal();
        server.Server.RespondStreaming("three-then-wait", (_, context) => ThreeThenWait(release, context.CancellationToken),
            new RpcMethodOptions { CoalesceResponses = true });

        var received = new List<string>();
        await foreach (var item in client.Client.RequestStreamAsync(server.PeerId, "three-then-wait", Bytes(""), null, TestToken))
        {
            received.Add(Text(item));
            if (received.Count == 3) release.TrySetResult();
        }

        Assert.That(received, Is.EqualTo(new[] { "1", "2", "3", "4" }));

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> ThreeThenWait(TaskCompletionSource release, [EnumeratorCancellation] CancellationToken ct)
        {
            yield return Bytes("1");
            yield return Bytes("2");
            yield return Bytes("3");
            await release.Task.WaitOrCancelAsync(ct);
            yield return Bytes("4");
        }
    });

    [Test]
    public Task Streaming_ErrorAfterItems_ReachesTheCallerAfterTheItems() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.RespondStreaming("fails", (_, _) => Fail());

        var items = new List<string>();
        var error = await FailureOf(ReadAll());

        Assert.That(items, Is.EqualTo(new[] { "first" }));
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.NotFound));
        Assert.That(error.Message, Is.EqualTo("no second"));

        async Task ReadAll()
        {
            await foreach (var item in client.Client.RequestStreamAsync(server.PeerId, "fails", Bytes(""), null, TestToken))
                items.Add(Text(item));
        }

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Fail()
        {
            await Task.Yield();
            yield return Bytes("first");
            throw new RpcException(RpcStatusCode.NotFound, "no second");
        }
    });

    [Test]
    public Task Streaming_CallerStopsEarly_CancelsTheHandler() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var cancelled = NewSignal();
        server.Server.RespondStreaming("endless", (_, context) => Endless(cancelled, context.CancellationToken));

        await foreach (var item in client.Client.RequestStreamAsync(server.PeerId, "endless", Bytes(""), null, TestToken))
        {
            Assert.That(Text(item), Is.EqualTo("tick"));
            break;
        }

        await cancelled.Task.WaitOrCancelAsync(TestToken);

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Endless(TaskCompletionSource cancelled, [EnumeratorCancellation] CancellationToken ct)
        {
            using var _ = ct.Register(() => cancelled.TrySetResult());
            while (true)
            {
                yield return Bytes("tick");
                await Task.Yield();
            }
        }
    });

    [Test]
    public Task HandlerThrows_CallerGetsInternalWithAFixedText_NotTheMessageOrStackTrace() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("buggy", (_, _) => throw new InvalidOperationException("the model is not loaded"));

        var error = await FailureOf(CallAsync(client, server, "buggy", ""));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Internal));
        // The exception's text may name paths or internal state; it stays in the server's log.
        Assert.That(error.Message, Does.StartWith("internal error").And.Not.Contain("model is not loaded"));
        Assert.That(error.Message, Does.Not.Contain(" at "));
        Assert.That(error.Details, Is.Empty);
    });

    [Test]
    public Task HandlerThrowsRpcException_CallerGetsItsCodeMessageAndRetryAfter() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("limited", (_, _) => throw RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "slow down", TimeSpan.FromSeconds(3)));

        var error = await FailureOf(CallAsync(client, server, "limited", ""));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(error.Message, Is.EqualTo("slow down"));
        Assert.That(error.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(3)));
    });

    [Test]
    public Task UnknownMethod_FailsWithUnknownMethod_AndTheServerKeepsServing() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("known", (_, _) => Answer("ok"));

        var error = await FailureOf(CallAsync(client, server, "unknown", ""));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.UnknownMethod));
        Assert.That(Text(await CallAsync(client, server, "known", "")), Is.EqualTo("ok"));
    });

    [Test]
    public Task UnaryCallOfAStreamingMethod_FailsWithUnknownMethod() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.RespondStreaming("stream", (_, _) => Nothing());

        Assert.That((await FailureOf(CallAsync(client, server, "stream", ""))).Code, Is.EqualTo(RpcStatusCode.UnknownMethod));

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Nothing()
        {
            await Task.Yield();
            yield break;
        }
    });

    [Test]
    public Task Unrespond_MakesTheMethodUnknown() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("gone", (_, _) => Answer("ok"));
        Assert.That(server.Server.Unrespond("gone"), Is.True);

        Assert.That((await FailureOf(CallAsync(client, server, "gone", ""))).Code, Is.EqualTo(RpcStatusCode.UnknownMethod));
    });

    [Test]
    public Task Deadline_PassesWhileTheHandlerWaits_CallerGetsDeadlineExceeded_AndTheHandlerIsCancelled() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var started = NewSignal<RpcCallContext>();
        var cancelled = NewSignal();
        server.Server.Respond("slow", BlockingHandler(started, cancelled));

        var call = CallAsync(client, server, "slow", "", new RpcCallOptions { Timeout = TimeSpan.FromSeconds(5) });
        var context = await started.Task.WaitOrCancelAsync(TestToken);
        Assert.That(context.Deadline, Is.Not.Null);
        Assert.That(context.RemainingTime, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(5)).And.GreaterThan(TimeSpan.FromSeconds(4)));
        await AdvanceAsync(TimeSpan.FromSeconds(5));

        Assert.That((await FailureOf(call)).Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded));
        await cancelled.Task.WaitOrCancelAsync(TestToken);
    });

    [Test]
    public Task Deadline_AlreadyPassed_FailsWithoutCallingTheServer() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var calls = 0;
        server.Server.Respond("count", (_, _) =>
        {
            Interlocked.Increment(ref calls);
            return Answer("");
        });

        var error = await FailureOf(CallAsync(client, server, "count", "", new RpcCallOptions { Deadline = Time.GetUtcNow() - TimeSpan.FromSeconds(1) }));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded));
        Assert.That(calls, Is.Zero);
    });

    [Test]
    public Task Deadline_PropagatesThroughAForwardingHandler() => RunTestAsync(async () =>
    {
        var backend = await NodeAsync("backend");
        var gateway = await NodeAsync("gateway");
        var client = await NodeAsync("client");
        var backendContext = NewSignal<RpcCallContext>();
        backend.Server.Respond("work", (_, context) =>
        {
            backendContext.TrySetResult(context);
            return Answer("done");
        });
        gateway.Server.Respond("forward", async (request, context) =>
            await gateway.Client.RequestAsync(backend.PeerId, "work", request, RpcCallOptions.FromContext(context), context.CancellationToken));

        var response = await CallAsync(client, gateway, "forward", "", new RpcCallOptions { Timeout = TimeSpan.FromSeconds(7), TraceId = "trace-7" });

        Assert.That(Text(response), Is.EqualTo("done"));
        var seen = await backendContext.Task.WaitOrCancelAsync(TestToken);
        Assert.That(seen.RemainingTime, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(7)).And.GreaterThan(TimeSpan.FromSeconds(6)),
            "the gateway passed on what was left of the client's 7 s");
        Assert.That(seen.TraceId, Is.EqualTo("trace-7"));
        Assert.That(seen.RemotePeer, Is.EqualTo(gateway.PeerId));
    });

    [Test]
    public Task DefaultTimeout_AppliesToCallsWithoutOne() => RunTestAsync(async () =>
    {
        var server = await NodeAsync("server");
        var client = await NodeAsync("client", o => o with { DefaultTimeout = TimeSpan.FromSeconds(2) });
        var started = NewSignal<RpcCallContext>();
        server.Server.Respond("slow", BlockingHandler(started, NewSignal()));

        var call = CallAsync(client, server, "slow", "");
        await started.Task.WaitOrCancelAsync(TestToken);
        await AdvanceAsync(TimeSpan.FromSeconds(2));

        Assert.That((await FailureOf(call)).Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded));
    });

    [Test]
    public Task CallerCancels_TheHandlersTokenFires_AndTheCallerGetsOperationCanceled() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var started = NewSignal<RpcCallContext>();
        var cancelled = NewSignal();
        server.Server.Respond("slow", BlockingHandler(started, cancelled));
        using var cts = new CancellationTokenSource();

        var call = client.Client.RequestAsync(server.PeerId, "slow", Bytes(""), null, cts.Token);
        await started.Task.WaitOrCancelAsync(TestToken);
        cts.Cancel();

        await Assert.ThatAsync(() => call, Throws.InstanceOf<OperationCanceledException>());
        await cancelled.Task.WaitOrCancelAsync(TestToken);
    });

    [Test]
    public Task RequestOverTheSizeLimit_IsRefusedWithResourceExhausted_AndTheLimitItselfPasses() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("size", (request, _) => Answer(request.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));

        var tooLarge = new byte[RpcOptions.DefaultMaxMessageSize + 1];
        var error = await FailureOf(client.Client.RequestAsync(server.PeerId, "size", tooLarge, null, TestToken));
        var atLimit = await client.Client.RequestAsync(server.PeerId, "size", tooLarge.AsMemory(1), null, TestToken);

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(Text(atLimit), Is.EqualTo(RpcOptions.DefaultMaxMessageSize.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    });

    [Test]
    public Task RequestOverTheServersSmallerLimit_IsAnsweredWithResourceExhausted() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync(o => o with { MaxMessageSize = 1000 });
        server.Server.Respond("size", (_, _) => Answer("ok"));

        var error = await FailureOf(client.Client.RequestAsync(server.PeerId, "size", new byte[1001], null, TestToken));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(Text(await client.Client.RequestAsync(server.PeerId, "size", new byte[1000], null, TestToken)), Is.EqualTo("ok"));
    });

    [Test]
    public Task ResponseOverTheSizeLimit_FailsWithResourceExhausted() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync(o => o with { MaxMessageSize = 1000 });
        server.Server.Respond("big", (_, _) => ValueTask.FromResult<ReadOnlyMemory<byte>>(new byte[1001]));

        Assert.That((await FailureOf(CallAsync(client, server, "big", ""))).Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
    });

    [Test]
    public Task ConcurrentCallsPastThePerPeerLimit_GetResourceExhausted_AndSlotsComeBack() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync(o => o with { MaxConcurrentCallsPerPeer = 2 });
        var release = NewSignal();
        var started = 0;
        var twoStarted = NewSignal();
        server.Server.Respond("hold", async (_, context) =>
        {
            if (Interlocked.Increment(ref started) == 2) twoStarted.TrySetResult();
            await release.Task.WaitOrCancelAsync(context.CancellationToken);
            return Bytes("held");
        });
        server.Server.Respond("quick", (_, _) => Answer("quick"));

        var first = CallAsync(client, server, "hold", "");
        var second = CallAsync(client, server, "hold", "");
        await twoStarted.Task.WaitOrCancelAsync(TestToken);
        var third = await FailureOf(CallAsync(client, server, "quick", ""));
        release.TrySetResult();

        Assert.That(third.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(Text(await first), Is.EqualTo("held"));
        Assert.That(Text(await second), Is.EqualTo("held"));
        Assert.That(Text(await CallAsync(client, server, "quick", "")), Is.EqualTo("quick"));
    });

    [Test]
    public Task ACallerAtItsLimit_MayCallAgainAsSoonAsItHasTheAnswer() => RunTestAsync(async () =>
    {
        // The server gives the slot back before the last frame goes out; were it after, the caller's next
        // call could arrive first and be refused by the server's own bookkeeping.
        var (client, server) = await PairAsync(o => o with { MaxConcurrentCallsPerPeer = 1 });
        server.Server.Respond("quick", (_, _) => Answer("quick"));
        server.Server.RespondStreaming("pair", (_, _) => Pair());

        for (var i = 0; i < 25; i++)
        {
            Assert.That(Text(await CallAsync(client, server, "quick", "")), Is.EqualTo("quick"), $"unary call {i}");
            var items = 0;
            await foreach (var _ in client.Client.RequestStreamAsync(server.PeerId, "pair", Bytes(""), null, TestToken)) items++;
            Assert.That(items, Is.EqualTo(2), $"streaming call {i}");
        }

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Pair()
        {
            await Task.Yield();
            yield return Bytes("1");
            yield return Bytes("2");
        }
    });

    [Test]
    public Task PerPeerLimit_CountsEachCallerSeparately() => RunTestAsync(async () =>
    {
        var server = await NodeAsync("server", o => o with { MaxConcurrentCallsPerPeer = 1 });
        var a = await NodeAsync("a");
        var b = await NodeAsync("b");
        var release = NewSignal();
        var started = NewSignal();
        server.Server.Respond("hold", HoldingHandler(started, release));
        server.Server.Respond("quick", (_, _) => Answer("quick"));

        var held = CallAsync(a, server, "hold", "");
        await started.Task.WaitOrCancelAsync(TestToken);

        Assert.That(Text(await CallAsync(b, server, "quick", "")), Is.EqualTo("quick"));
        release.TrySetResult();
        Assert.That(Text(await held), Is.EqualTo("held"));
    });

    [Test]
    public Task Firewall_ServerWide_DeniesOtherPeers_AndAdmitsAllowedOnes() => RunTestAsync(async () =>
    {
        var server = await NodeAsync("server");
        var friend = await NodeAsync("friend");
        var stranger = await NodeAsync("stranger");
        server.Server.Respond("hello", (_, _) => Answer("hello"));
        server.Server.AllowedPeers = new HashSet<PeerId> { friend.PeerId };

        Assert.That(Text(await CallAsync(friend, server, "hello", "")), Is.EqualTo("hello"));
        Assert.That((await FailureOf(CallAsync(stranger, server, "hello", ""))).Code, Is.EqualTo(RpcStatusCode.PermissionDenied));

        server.Server.AllowedPeers = null;
        Assert.That(Text(await CallAsync(stranger, server, "hello", "")), Is.EqualTo("hello"));
    });

    [Test]
    public Task Firewall_PerMethod_DeniesOnlyThatMethod() => RunTestAsync(async () =>
    {
        var server = await NodeAsync("server");
        var admin = await NodeAsync("admin");
        var user = await NodeAsync("user");
        server.Server.Respond("public", (_, _) => Answer("public"));
        server.Server.Respond("admin", (_, _) => Answer("admin"), new RpcMethodOptions { AllowedPeers = new HashSet<PeerId> { admin.PeerId } });

        Assert.That(Text(await CallAsync(admin, server, "admin", "")), Is.EqualTo("admin"));
        Assert.That((await FailureOf(CallAsync(user, server, "admin", ""))).Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
        Assert.That(Text(await CallAsync(user, server, "public", "")), Is.EqualTo("public"));
    });

    [Test]
    public Task ServerStops_DuringACall_CallerGetsUnavailable() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var started = NewSignal<RpcCallContext>();
        var cancelled = NewSignal();
        server.Server.Respond("slow", BlockingHandler(started, cancelled));

        var call = CallAsync(client, server, "slow", "");
        await started.Task.WaitOrCancelAsync(TestToken);
        await server.DisposeAsync();

        var error = await FailureOf(call);
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.NotDelivered, Is.False, "the handler was running");
        await cancelled.Task.WaitOrCancelAsync(TestToken);
    });

    [Test]
    public Task CallToACrashedPeer_FailsWithUnavailable() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("hello", (_, _) => Answer("hello"));
        await CrashAsync(server);

        Assert.That((await FailureOf(CallAsync(client, server, "hello", ""))).Code, Is.EqualTo(RpcStatusCode.Unavailable));
    });

    [Test]
    public Task CallToACrashedPeer_IsMarkedNotDelivered() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var calls = 0;
        server.Server.Respond("hello", (_, _) =>
        {
            calls++;
            return Answer("hello");
        });
        await CrashAsync(server);

        var error = await FailureOf(CallAsync(client, server, "hello", ""));

        Assert.That(error.NotDelivered, Is.True, "the dial failed: the request never left");
        Assert.That(calls, Is.Zero);
    });

    [Test]
    public Task CallToAStoppedServer_IsUnavailable_AndMarkedNotDelivered() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("hello", (_, _) => Answer("hello"));
        await server.DisposeAsync();

        var error = await FailureOf(CallAsync(client, server, "hello", ""));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.NotDelivered, Is.True);
    });

    [Test]
    public Task RefusalsBeforeTheHandler_AreMarkedNotDelivered_OnTheCallersSide() => RunTestAsync(async () =>
    {
        var server = await NodeAsync("server", o => o with { MaxConcurrentCallsPerPeer = 1 });
        var friend = await NodeAsync("friend");
        var stranger = await NodeAsync("stranger");
        var release = NewSignal();
        var started = NewSignal();
        server.Server.Respond("hold", HoldingHandler(started, release));
        server.Server.Respond("admin", (_, _) => Answer("admin"), new RpcMethodOptions { AllowedPeers = new HashSet<PeerId> { server.PeerId } });
        server.Server.RespondStreaming("stream", (_, _) => throw new InvalidOperationException("never called"));
        server.Server.AllowedPeers = new HashSet<PeerId> { friend.PeerId };

        var unknown = await FailureOf(CallAsync(friend, server, "unknown", ""));
        var wrongKind = await FailureOf(CallAsync(friend, server, "stream", ""));
        var perMethod = await FailureOf(CallAsync(friend, server, "admin", ""));
        var serverWide = await FailureOf(CallAsync(stranger, server, "hold", ""));
        var held = CallAsync(friend, server, "hold", "");
        await started.Task.WaitOrCancelAsync(TestToken);
        var overLimit = await FailureOf(CallAsync(friend, server, "hold", ""));
        release.TrySetResult();

        Assert.Multiple(() =>
        {
            Assert.That(unknown.Code, Is.EqualTo(RpcStatusCode.UnknownMethod));
            Assert.That(wrongKind.Code, Is.EqualTo(RpcStatusCode.UnknownMethod));
            Assert.That(perMethod.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
            Assert.That(serverWide.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
            Assert.That(overLimit.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
            foreach (var error in new[] { unknown, wrongKind, perMethod, serverWide, overLimit })
                Assert.That(error.NotDelivered, Is.True, $"{error.Code}: {error.Message}");
        });
        Assert.That(Text(await held), Is.EqualTo("held"));
    });

    [Test]
    public Task HandlerFailures_AreNotMarkedNotDelivered_EvenWhenTheHandlerForwardsSuchAMark() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        server.Server.Respond("buggy", (_, _) => throw new InvalidOperationException("boom"));
        server.Server.Respond("refusing", (_, _) => throw new RpcException(RpcStatusCode.ResourceExhausted, "busy"));
        // A handler that did work and then relays a downstream call's refusal: its caller must not think the call never arrived.
        server.Server.Respond("forwarding", (_, _) => throw RpcException.Undelivered(RpcStatusCode.Unavailable, "downstream unreachable"));

        var buggy = await FailureOf(CallAsync(client, server, "buggy", ""));
        var refusing = await FailureOf(CallAsync(client, server, "refusing", ""));
        var forwarding = await FailureOf(CallAsync(client, server, "forwarding", ""));

        Assert.That(buggy.Code, Is.EqualTo(RpcStatusCode.Internal));
        Assert.That(refusing.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(forwarding.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(new[] { buggy.NotDelivered, refusing.NotDelivered, forwarding.NotDelivered }, Has.All.False);
    });

    [Test]
    public Task ARefusalBeforeTheHandler_ByAWrapper_IsMarkedNotDelivered() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var calls = 0;
        RpcHandler handler = (_, _) =>
        {
            calls++;
            return Answer("ran");
        };
        // What a draining worker's wrapper does: it turns the call away before the real handler runs.
        server.Server.Respond("stopping", (_, _) => throw RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable, "worker is stopping"));
        server.Server.RespondStreaming("stopping-stream", (_, _) => throw RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable, "worker is stopping"));
        server.Server.Respond("running", handler);

        var unary = await FailureOf(CallAsync(client, server, "stopping", ""));
        var streaming = await FailureOf(ReadAllAsync(client.Client.RequestStreamAsync(server.PeerId, "stopping-stream", Bytes(""), null, TestToken)));

        Assert.Multiple(() =>
        {
            foreach (var error in new[] { unary, streaming })
            {
                Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
                Assert.That(error.Message, Is.EqualTo("worker is stopping"));
                Assert.That(error.NotDelivered, Is.True, "the wrapper refused before the handler ran: the caller may go elsewhere");
            }
        });
        Assert.That(Text(await CallAsync(client, server, "running", "")), Is.EqualTo("ran"));
        Assert.That(calls, Is.EqualTo(1));
    });

    [Test]
    public Task ARefusalBeforeTheHandler_ForwardedByAnotherHandler_IsNotMarkedNotDelivered() => RunTestAsync(async () =>
    {
        var downstream = await NodeAsync("downstream");
        var middle = await NodeAsync("middle");
        var client = await NodeAsync("client");
        downstream.Server.Respond("work", (_, _) => throw RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable, "worker is stopping"));
        RpcException? seenByMiddle = null;
        // A handler that did its part and then passes on the downstream refusal as it got it.
        middle.Server.Respond("forward", async (_, context) =>
        {
            try
            {
                return await middle.Client.RequestAsync(downstream.PeerId, "work", Bytes(""), RpcCallOptions.FromContext(context), context.CancellationToken);
            }
            catch (RpcException e)
            {
                seenByMiddle = e;
                throw;
            }
        });

        var error = await FailureOf(CallAsync(client, middle, "forward", ""));

        Assert.That(seenByMiddle?.NotDelivered, Is.True, "the downstream call never reached its handler");
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.NotDelivered, Is.False, "the middle handler ran: its caller must not think the call never arrived");
    });

    [Test]
    public Task ConnectionLostMidCall_IsUnavailable_AndNotMarkedNotDelivered() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var started = NewSignal<RpcCallContext>();
        server.Server.Respond("slow", BlockingHandler(started, NewSignal()));

        var call = CallAsync(client, server, "slow", "");
        await started.Task.WaitOrCancelAsync(TestToken);
        await CrashAsync(server);
        var error = await FailureOf(call);

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.NotDelivered, Is.False, "the handler had started");
    });

    [Test]
    public Task Calls_ManyConcurrent_AllGetTheirOwnAnswer() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync(o => o with { MaxConcurrentCallsPerPeer = ManyCalls });
        server.Server.Respond("echo", (request, _) => ValueTask.FromResult<ReadOnlyMemory<byte>>(request.ToArray()));

        var calls = Enumerable.Range(0, ManyCalls).Select(async i =>
        {
            var request = BitConverter.GetBytes(i);
            var response = await client.Client.RequestAsync(server.PeerId, "echo", request, null, TestToken);
            return response.AsSpan().SequenceEqual(request);
        }).ToArray();

        Assert.That(await Task.WhenAll(calls), Has.All.True);
    });

    [Test]
    public Task Typed_MessagePackContractsRoundTrip_AndAMalformedRequestIsInvalidArgument() => RunTestAsync(async () =>
    {
        var (client, server) = await PairAsync();
        var codec = MessagePackRpcCodec<ConformanceProbe>.Instance;
        server.Server.Respond("topic-key", codec, (request, _) => ValueTask.FromResult(new ConformanceProbe { Digest = TopicKey.For(request.Text) }));

        var typed = await client.Client.RequestAsync(server.PeerId, "topic-key", new ConformanceProbe { Text = "t" }, codec, cancellationToken: TestToken);
        var malformed = await FailureOf(client.Client.RequestAsync(server.PeerId, "topic-key", new byte[] { 0xFF, 0xFF, 0xFF }, null, TestToken));

        Assert.That(typed.Digest, Is.EqualTo(TopicKey.For("t")));
        Assert.That(malformed.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
    });

    [Test]
    public Task Topic_CallsAProvider_AndNoProviderIsUnavailable() => RunTestAsync(async () =>
    {
        var provider = await NodeAsync("provider");
        var client = await NodeAsync("client");
        provider.Server.Respond("who", (_, _) => Answer("provider"));

        var none = await FailureOf(client.Client.RequestTopicAsync(Topic, "who", Bytes(""), null, TestToken));
        Topics.Announce(Topic, provider);
        await AdvanceAsync(DefaultOptions().TopicCacheTtl);

        Assert.That(none.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(Text(await client.Client.RequestTopicAsync(Topic, "who", Bytes(""), null, TestToken)), Is.EqualTo("provider"));
    });

    [Test]
    public Task Topic_WhereEveryProviderFailsTheCalleeCheck_IsLookedUpAgainAtTheNextCall_NotAfterTheTtl() => RunTestAsync(async () =>
    {
        var refused = await NodeAsync("refused");
        var accepted = await NodeAsync("accepted");
        var client = await NodeAsync("client", o => o with { TopicCacheTtl = TimeSpan.FromSeconds(30) });
        refused.Server.Respond("who", (_, _) => Answer("refused"));
        accepted.Server.Respond("who", (_, _) => Answer("accepted"));
        var options = new RpcCallOptions
        {
            CalleeCheck = (peer, _) => ValueTask.FromResult(peer == refused.PeerId ? RpcException.Undelivered(RpcStatusCode.Unavailable, "not allowed") : null),
        };
        Topics.Announce(Topic, refused);

        var none = await FailureOf(client.Client.RequestTopicAsync(Topic, "who", Bytes(""), options, TestToken));
        var noneOfAll = await client.Client.RequestAllAsync(Topic, "who", Bytes(""), options, TestToken);
        Topics.Announce(Topic, accepted);
        var answer = Text(await client.Client.RequestTopicAsync(Topic, "who", Bytes(""), options, TestToken));

        Assert.That(none.Message, Does.Contain("may be called").And.Contain("not allowed"));
        Assert.That(noneOfAll.Select(r => (r.Peer, r.Skipped, r.Error?.Message)), Is.EqualTo(new[] { (refused.PeerId, true, "not allowed") }),
            "a skipped provider is reported with the check's reason, so the caller can tell it from no provider at all");
        Assert.That(answer, Is.EqualTo("accepted"), "found within the TTL of the first lookup");
        Assert.That(Topics.Lookups, Is.EqualTo(3), "each call after one whose every provider was refused looks the topic up again");
    });

    [Test]
    public Task Topic_ProvidersAreCached_UntilTheTtlPasses() => RunTestAsync(async () =>
    {
        var provider = await NodeAsync("provider");
        var client = await NodeAsync("client", o => o with { TopicCacheTtl = TimeSpan.FromSeconds(30) });
        provider.Server.Respond("who", (_, _) => Answer("provider"));
        Topics.Announce(Topic, provider);

        await client.Client.RequestTopicAsync(Topic, "who", Bytes(""), null, TestToken);
        await client.Client.RequestTopicAsync(Topic, "who", Bytes(""), null, TestToken);
        var lookupsWithinTtl = Topics.Lookups;
        await AdvanceAsync(TimeSpan.FromSeconds(30));
        await client.Client.RequestTopicAsync(Topic, "who", Bytes(""), null, TestToken);

        Assert.That(lookupsWithinTtl, Is.EqualTo(1));
        Assert.That(Topics.Lookups, Is.EqualTo(2));
    });

    [Test]
    public Task Topic_IdempotentCall_FailsOverWhenTheChosenProviderIsKilledMidCall() => RunTestAsync(async () =>
    {
        var doomed = await NodeAsync("doomed");
        var healthy = await NodeAsync("healthy");
        // Always the first candidate, so the call starts on the provider about to be killed.
        var client = await NodeAsync("client", o => o with { Random = new FirstChoiceRandom() });
        var started = NewSignal<RpcCallContext>();
        doomed.Server.Respond("work", BlockingHandler(started, NewSignal()));
        healthy.Server.Respond("work", (_, _) => Answer("healthy"));
        Topics.Announce(Topic, doomed);
        Topics.Announce(Topic, healthy);

        var call = client.Client.RequestTopicAsync(Topic, "work", Bytes(""), new RpcCallOptions { Idempotent = true }, TestToken);
        await started.Task.WaitOrCancelAsync(TestToken);
        await CrashAsync(doomed);

        Assert.That(Text(await call), Is.EqualTo("healthy"));
    });

    [Test]
    public Task Topic_NonIdempotentCall_DoesNotFailOver() => RunTestAsync(async () =>
    {
        var doomed = await NodeAsync("doomed");
        var healthy = await NodeAsync("healthy");
        var client = await NodeAsync("client", o => o with { Random = new FirstChoiceRandom() });
        var started = NewSignal<RpcCallContext>();
        var healthyCalls = 0;
        doomed.Server.Respond("work", BlockingHandler(started, NewSignal()));
        healthy.Server.Respond("work", (_, _) =>
        {
            Interlocked.Increment(ref healthyCalls);
            return Answer("healthy");
        });
        Topics.Announce(Topic, doomed);
        Topics.Announce(Topic, healthy);

        var call = client.Client.RequestTopicAsync(Topic, "work", Bytes(""), null, TestToken);
        await started.Task.WaitOrCancelAsync(TestToken);
        await CrashAsync(doomed);

        Assert.That((await FailureOf(call)).Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(healthyCalls, Is.Zero);
        Assert.That(Text(await client.Client.RequestTopicAsync(Topic, "work", Bytes(""), null, TestToken)), Is.EqualTo("healthy"),
            "the failed provider was evicted from the cache");
    });

    [Test]
    public Task Topic_NonIdempotentCall_FailsOverWhenTheChosenProviderWasNeverReached() => RunTestAsync(async () =>
    {
        var doomed = await NodeAsync("doomed");
        var healthy = await NodeAsync("healthy");
        var client = await NodeAsync("client", o => o with { Random = new FirstChoiceRandom() });
        doomed.Server.Respond("work", (_, _) => Answer("doomed"));
        healthy.Server.Respond("work", (_, _) => Answer("healthy"));
        Topics.Announce(Topic, doomed);
        Topics.Announce(Topic, healthy);
        await CrashAsync(doomed);

        Assert.That(Text(await client.Client.RequestTopicAsync(Topic, "work", Bytes(""), null, TestToken)), Is.EqualTo("healthy"));
    });

    [Test]
    public Task Topic_NonIdempotentCall_FailsOverWhenTheChosenProviderRefusedItBeforeItsHandler() => RunTestAsync(async () =>
    {
        var stopping = await NodeAsync("stopping");
        var healthy = await NodeAsync("healthy");
        var client = await NodeAsync("client", o => o with { Random = new FirstChoiceRandom() });
        // As a draining worker does: refused before the handler, so the call may go elsewhere though it is not idempotent.
        stopping.Server.Respond("work", (_, _) => throw RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable, "worker is stopping"));
        healthy.Server.Respond("work", (_, _) => Answer("healthy"));
        Topics.Announce(Topic, stopping);
        Topics.Announce(Topic, healthy);

        Assert.That(Text(await client.Client.RequestTopicAsync(Topic, "work", Bytes(""), null, TestToken)), Is.EqualTo("healthy"));
    });

    [Test]
    public Task TopicStream_StreamsFromAProvider_AndNoProviderIsUnavailable() => RunTestAsync(async () =>
    {
        var provider = await NodeAsync("provider");
        var client = await NodeAsync("client", o => o with { TopicCacheTtl = TimeSpan.Zero });
        provider.Server.RespondStreaming("words", (_, _) => Items("a", "b", "c"));

        var none = await FailureOf(TopicStreamAsync(client, "words", null));
        Topics.Announce(Topic, provider);

        Assert.That(none.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(none.Message, Does.Contain("no provider"));
        Assert.That(await TopicStreamAsync(client, "words", null), Is.EqualTo(new[] { "a", "b", "c" }));
    });

    [Test]
    public Task TopicStream_FailsOverWhenTheChosenProviderWasNeverReached_AndForgetsIt() => RunTestAsync(async () =>
    {
        var doomed = await NodeAsync("doomed");
        var healthy = await NodeAsync("healthy");
        var client = await NodeAsync("client", o => o with { Random = new FirstChoiceRandom(), TopicCacheTtl = TimeSpan.FromMinutes(5) });
        doomed.Server.RespondStreaming("words", (_, _) => Items("doomed"));
        healthy.Server.RespondStreaming("words", (_, _) => Items("healthy"));
        Topics.Announce(Topic, doomed);
        Topics.Announce(Topic, healthy);
        await CrashAsync(doomed);

        // Not idempotent: only a request that provably never arrived may go to another provider.
        Assert.That(await TopicStreamAsync(client, "words", null), Is.EqualTo(new[] { "healthy" }));
        Assert.That(await TopicStreamAsync(client, "words", null), Is.EqualTo(new[] { "healthy" }));
        Assert.That(Topics.Lookups, Is.EqualTo(1), "the crashed provider was dropped from the cached providers, not the whole topic");
    });

    [Test]
    public Task TopicStream_ProviderKilledBeforeItsFirstItem_FailsTheStream_AndIsNotRetriedElsewhere() => RunTestAsync(async () =>
    {
        var doomed = await NodeAsync("doomed");
        var healthy = await NodeAsync("healthy");
        var client = await NodeAsync("client", o => o with { Random = new FirstChoiceRandom() });
        var started = NewSignal();
        var healthyCalls = 0;
        doomed.Server.RespondStreaming("words", (_, context) => Hold(started, context.CancellationToken));
        healthy.Server.RespondStreaming("words", (_, _) =>
        {
            Interlocked.Increment(ref healthyCalls);
            return Items("healthy");
        });
        Topics.Announce(Topic, doomed);
        Topics.Announce(Topic, healthy);

        var stream = TopicStreamAsync(client, "words", null);
        await started.Task.WaitOrCancelAsync(TestToken);
        await CrashAsync(doomed);

        Assert.That((await FailureOf(stream)).Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(healthyCalls, Is.Zero, "the request reached the crashed provider: running it elsewhere could run it twice");
        Assert.That(await TopicStreamAsync(client, "words", null), Is.EqualTo(new[] { "healthy" }), "the failed provider was evicted from the cache");

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Hold(TaskCompletionSource started, [EnumeratorCancellation] CancellationToken ct)
        {
            started.TrySetResult();
            await NewSignal().Task.WaitOrCancelAsync(ct);
            yield break;
        }
    });

    [Test]
    public Task TopicStream_ErrorAfterTheFirstItem_ReachesTheCaller_AndIsNotRetriedElsewhere() => RunTestAsync(async () =>
    {
        var failing = await NodeAsync("failing");
        var healthy = await NodeAsync("healthy");
        var client = await NodeAsync("client", o => o with { Random = new FirstChoiceRandom() });
        var healthyCalls = 0;
        failing.Server.RespondStreaming("words", (_, _) => FirstThenFail());
        healthy.Server.RespondStreaming("words", (_, _) =>
        {
            Interlocked.Increment(ref healthyCalls);
            return Items("healthy");
        });
        Topics.Announce(Topic, failing);
        Topics.Announce(Topic, healthy);

        var items = new List<string>();
        var error = await FailureOf(ReadAll());

        Assert.That(items, Is.EqualTo(new[] { "first" }));
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(healthyCalls, Is.Zero);

        async Task ReadAll()
        {
            await foreach (var item in client.Client.RequestTopicStreamAsync(Topic, "words", Bytes(""), new RpcCallOptions { Idempotent = true }, TestToken))
                items.Add(Text(item));
        }

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> FirstThenFail()
        {
            await Task.Yield();
            yield return Bytes("first");
            throw new RpcException(RpcStatusCode.Unavailable, "engine went away");
        }
    });

    [Test]
    public Task TopicStream_SkipsProvidersThatFailTheCalleeCheck() => RunTestAsync(async () =>
    {
        var refused = await NodeAsync("refused");
        var accepted = await NodeAsync("accepted");
        var client = await NodeAsync("client", o => o with { Random = new FirstChoiceRandom() });
        var refusedCalls = 0;
        refused.Server.RespondStreaming("words", (_, _) =>
        {
            Interlocked.Increment(ref refusedCalls);
            return Items("refused");
        });
        accepted.Server.RespondStreaming("words", (_, _) => Items("accepted"));
        Topics.Announce(Topic, refused);
        Topics.Announce(Topic, accepted);
        var options = new RpcCallOptions
        {
            CalleeCheck = (peer, _) => ValueTask.FromResult(peer == refused.PeerId ? RpcException.Undelivered(RpcStatusCode.Unavailable, "not allowed") : null),
        };

        Assert.That(await TopicStreamAsync(client, "words", options), Is.EqualTo(new[] { "accepted" }));
        Assert.That(refusedCalls, Is.Zero);
    });

    private async Task<string[]> TopicStreamAsync(RpcConformanceNode client, string method, RpcCallOptions? options)
    {
        var items = new List<string>();
        await foreach (var item in client.Client.RequestTopicStreamAsync(Topic, method, Bytes(""), options, TestToken)) items.Add(Text(item));
        return [.. items];
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Items(params string[] texts)
    {
        foreach (var text in texts)
        {
            await Task.Yield();
            yield return Bytes(text);
        }
    }

    [Test]
    public Task Topic_BalancesLoadAcrossProviders() => RunTestAsync(async () =>
    {
        var providers = new List<RpcConformanceNode>();
        var counts = new int[3];
        var total = 0;
        var allStarted = NewSignal();
        var release = NewSignal();
        for (var i = 0; i < 3; i++)
        {
            var index = i;
            var provider = await NodeAsync($"p{i}");
            provider.Server.Respond("work", async (_, context) =>
            {
                Interlocked.Increment(ref counts[index]);
                if (Interlocked.Increment(ref total) == 30) allStarted.TrySetResult();
                await release.Task.WaitOrCancelAsync(context.CancellationToken);
                return Bytes("ok");
            });
            Topics.Announce(Topic, provider);
            providers.Add(provider);
        }
        var client = await NodeAsync("client");

        // In-flight calls make a provider costlier, so 30 concurrent calls cannot all land on one.
        var calls = Enumerable.Range(0, 30).Select(_ => client.Client.RequestTopicAsync(Topic, "work", Bytes(""), null, TestToken)).ToArray();
        await allStarted.Task.WaitOrCancelAsync(TestToken);
        release.TrySetResult();
        await Task.WhenAll(calls);

        Assert.That(counts, Has.All.GreaterThan(0));
        Assert.That(counts.Sum(), Is.EqualTo(30));
    });

    [Test]
    public Task TopicAll_CallsEveryProvider_WithPerPeerResults() => RunTestAsync(async () =>
    {
        var good = await NodeAsync("good");
        var bad = await NodeAsync("bad");
        var client = await NodeAsync("client");
        good.Server.Respond("who", (_, _) => Answer("good"));
        bad.Server.Respond("who", (_, _) => throw new RpcException(RpcStatusCode.NotFound, "not here"));
        Topics.Announce(Topic, good);
        Topics.Announce(Topic, bad);

        var results = await client.Client.RequestAllAsync(Topic, "who", Bytes(""), null, TestToken);

        Assert.That(results, Has.Count.EqualTo(2));
        var byPeer = results.ToDictionary(r => r.Peer);
        Assert.That(Text(byPeer[good.PeerId].Response!), Is.EqualTo("good"));
        Assert.That(byPeer[bad.PeerId].IsSuccess, Is.False);
        Assert.That(byPeer[bad.PeerId].Error!.Code, Is.EqualTo(RpcStatusCode.NotFound));
    });

    /// <summary>A discovery registry for the suite: providers by topic, and how many lookups were made.</summary>
    protected sealed class TopicTable : IDiscovery
    {
        private readonly Dictionary<string, List<DiscoveredPeer>> _providers = new(StringComparer.Ordinal);
        private int _lookups;

        public int Lookups => Volatile.Read(ref _lookups);

        public void Announce(string topic, RpcConformanceNode node)
        {
            lock (_providers)
            {
                if (!_providers.TryGetValue(topic, out var list)) _providers[topic] = list = [];
                list.Add(new DiscoveredPeer(node.PeerId, node.Addresses));
            }
        }

        public Task AnnounceAsync(string topic, CancellationToken cancellationToken) => Task.CompletedTask;

        public Task UnannounceAsync(string topic, CancellationToken cancellationToken) => Task.CompletedTask;

        public Task<IReadOnlyList<DiscoveredPeer>> LookupAsync(string topic, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _lookups);
            lock (_providers)
                return Task.FromResult<IReadOnlyList<DiscoveredPeer>>(_providers.TryGetValue(topic, out var list) ? list.ToArray() : []);
        }

        public Task WaitUntilJoinedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>Makes the load balancer's first random pick the first candidate (with equal costs, it wins).</summary>
    protected sealed class FirstChoiceRandom : Random
    {
        public FirstChoiceRandom() : base(0)
        {
        }

        public override int Next(int maxValue) => 0;
    }
}
