using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>The twin's own knobs: link latency on virtual time (each test a simulation), broken links, dropped messages, partitions, crashes.</summary>
public sealed class InMemoryRpcNetworkTests
{
    private SimulationClock _time = null!;
    private InMemoryRpcNetwork _network = null!;
    private InMemoryRpcNode _a = null!;
    private InMemoryRpcNode _b = null!;
    private int _handled;

    /// <summary>Runs <paramref name="body"/> as a simulation on a fresh network of two nodes answering "ping", then disposes them.</summary>
    private void Run(Func<Task> body) => SimulationTest.Run(async sim =>
    {
        _time = sim.Clock;
        _network = new InMemoryRpcNetwork(_time);
        _a = _network.CreateNode();
        _b = _network.CreateNode();
        _handled = 0;
        foreach (var node in new[] { _a, _b })
            node.Respond("ping", (_, _) =>
            {
                _handled++;
                return ValueTask.FromResult<ReadOnlyMemory<byte>>("pong"u8.ToArray());
            });
        try
        {
            await body();
        }
        finally
        {
            await _a.DisposeAsync();
            await _b.DisposeAsync();
        }
    });

    private static RpcCallOptions Within(int seconds) => new() { Timeout = TimeSpan.FromSeconds(seconds) };

    private static async Task<RpcStatusCode> CodeOf(Task call)
    {
        try
        {
            await call;
        }
        catch (RpcException e)
        {
            return e.Code;
        }
        Assert.Fail("the call succeeded");
        return default;
    }

    [Test]
    public void Latency_DelaysTheAnswerByTheRoundTrip_OnTheFakeClock() => Run(async () =>
    {
        _network.Link(_a.PeerId, _b.PeerId).Latency = TimeSpan.FromMilliseconds(100);
        _network.Link(_b.PeerId, _a.PeerId).Latency = TimeSpan.FromMilliseconds(50);

        var call = _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromMilliseconds(149));
        Assert.That(call.IsCompleted, Is.False);
        await _time.AdvanceAsync(TimeSpan.FromMilliseconds(1));

        Assert.That(await call, Is.EqualTo("pong"u8.ToArray()));
    });

    [Test]
    public void HandlerException_ReachesTheCallerAsInternalWithAFixedText_NotItsMessage_AndOthersAreServed() => Run(async () =>
    {
        _b.Respond("leak", (_, _) => throw new IOException("could not open /home/op/.p2pinference/auth/users.db: disk full"));

        RpcException? error = null;
        try
        {
            await _a.RequestAsync(_b.PeerId, "leak", ReadOnlyMemory<byte>.Empty, new RpcCallOptions { RequestId = "req-7" }, CancellationToken.None);
        }
        catch (RpcException e)
        {
            error = e;
        }

        Assert.That(error?.Code, Is.EqualTo(RpcStatusCode.Internal));
        Assert.That(error!.Message, Does.Not.Contain("/home").And.Not.Contain("disk full"));
        Assert.That(error.Message, Does.Contain("req-7"), "the caller can quote the id the server logged the failure under");
        Assert.That(await _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None), Is.EqualTo("pong"u8.ToArray()));
    });

    [Test]
    public void FailedLink_FailsCallsAtOnceWithUnavailable() => Run(async () =>
    {
        _network.Link(_a.PeerId, _b.PeerId).Fault = RpcLinkFault.Fail;

        Assert.That(await CodeOf(_a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None)),
            Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(_handled, Is.Zero);
    });

    [Test]
    public void FailedResponseLink_FailsTheCallAfterTheHandlerRan() => Run(async () =>
    {
        _network.Link(_b.PeerId, _a.PeerId).Fault = RpcLinkFault.Fail;

        Assert.That(await CodeOf(_a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None)),
            Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(_handled, Is.EqualTo(1));
    });

    [Test]
    public void TwoWayPartition_StallsCallsUntilTheirDeadline_AndHealRestoresThem() => Run(async () =>
    {
        _network.Partition(_a.PeerId, _b.PeerId);

        var call = _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, Within(5), CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(4));
        Assert.That(call.IsCompleted, Is.False);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(1));

        Assert.That(await CodeOf(call), Is.EqualTo(RpcStatusCode.DeadlineExceeded));
        _network.Heal();
        Assert.That(await _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, Within(5), CancellationToken.None), Is.EqualTo("pong"u8.ToArray()));
    });

    [Test]
    public void AsymmetricPartition_RequestsOneWayAreLost_AnswersTheOtherWayAreLost() => Run(async () =>
    {
        _network.PartitionOneWay(_a.PeerId, _b.PeerId);

        var aToB = _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, Within(5), CancellationToken.None);
        var bToA = _b.RequestAsync(_a.PeerId, "ping", ReadOnlyMemory<byte>.Empty, Within(5), CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(5));

        Assert.That(await CodeOf(aToB), Is.EqualTo(RpcStatusCode.DeadlineExceeded), "A's request never reached B");
        Assert.That(await CodeOf(bToA), Is.EqualTo(RpcStatusCode.DeadlineExceeded), "A answered, but the answer was lost on A→B");
        Assert.That(_handled, Is.EqualTo(1), "only B's request got through, to A's handler");
    });

    [Test]
    public void Crash_DuringACall_CallerGetsUnavailable_AndTheHandlerIsCancelled() => Run(async () =>
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _b.Respond("hang", async (_, context) =>
        {
            using var registration = context.CancellationToken.Register(() => cancelled.TrySetResult());
            started.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, context.CancellationToken);
            return Array.Empty<byte>();
        });

        var call = _a.RequestAsync(_b.PeerId, "hang", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);
        await started.Task;
        _network.Crash(_b.PeerId);

        Assert.That(await CodeOf(call), Is.EqualTo(RpcStatusCode.Unavailable));
        await cancelled.Task;
        Assert.That(_b.IsDown, Is.True);
    });

    [Test]
    public void CallToAPeerNotOnTheNetwork_IsUnavailable() => Run(async () =>
    {
        Assert.That(await CodeOf(_a.RequestAsync(KeyPair.FromRandom(SimulationExecutor.Current!.CreateRandom("identity", "stranger")).PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None)),
            Is.EqualTo(RpcStatusCode.Unavailable));
    });

    [Test]
    public void RequestBuffer_ReusedByTheCallerAfterSending_DoesNotChangeWhatTheServerGot() => Run(async () =>
    {
        var seen = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _network.Link(_a.PeerId, _b.PeerId).Latency = TimeSpan.FromSeconds(1);
        _b.Respond("keep", (request, _) =>
        {
            seen.TrySetResult(request.ToArray());
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(Array.Empty<byte>());
        });
        var buffer = new byte[] { 1, 2, 3 };

        var call = _a.RequestAsync(_b.PeerId, "keep", buffer, null, CancellationToken.None);
        buffer[0] = 9;
        await _time.AdvanceAsync(TimeSpan.FromSeconds(1));
        await call;

        Assert.That(await seen.Task, Is.EqualTo(new byte[] { 1, 2, 3 }));
    });

    [Test]
    public void CreateNode_TwiceWithOnePeerId_IsRefused()
    {
        var network = new InMemoryRpcNetwork(new FakeTimeProvider());
        var node = network.CreateNode();

        Assert.That(() => network.CreateNode(node.PeerId), Throws.InvalidOperationException);
    }
}
