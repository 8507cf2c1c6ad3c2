using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Time;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>The twin's own knobs: link latency on fake time, broken links, dropped messages, partitions, crashes.</summary>
[CancelAfter(10_000)]
public sealed class InMemoryRpcNetworkTests
{
    private FakeTimeProvider _time = null!;
    private InMemoryRpcNetwork _network = null!;
    private InMemoryRpcNode _a = null!;
    private InMemoryRpcNode _b = null!;
    private int _handled;

    [SetUp]
    public void CreateNetwork()
    {
        _time = new FakeTimeProvider();
        _network = new InMemoryRpcNetwork(_time);
        _a = _network.CreateNode();
        _b = _network.CreateNode();
        _handled = 0;
        foreach (var node in new[] { _a, _b })
            node.Respond("ping", (_, _) =>
            {
                Interlocked.Increment(ref _handled);
                return ValueTask.FromResult<ReadOnlyMemory<byte>>("pong"u8.ToArray());
            });
    }

    [TearDown]
    public async Task DisposeNodes()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
    }

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
    public async Task Latency_DelaysTheAnswerByTheRoundTrip_OnTheFakeClock()
    {
        _network.Link(_a.PeerId, _b.PeerId).Latency = TimeSpan.FromMilliseconds(100);
        _network.Link(_b.PeerId, _a.PeerId).Latency = TimeSpan.FromMilliseconds(50);

        var call = _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromMilliseconds(149));
        Assert.That(call.IsCompleted, Is.False);
        await _time.AdvanceAsync(TimeSpan.FromMilliseconds(1));

        Assert.That(await call, Is.EqualTo("pong"u8.ToArray()));
    }

    [Test]
    public async Task FailedLink_FailsCallsAtOnceWithUnavailable()
    {
        _network.Link(_a.PeerId, _b.PeerId).Fault = RpcLinkFault.Fail;

        Assert.That(await CodeOf(_a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None)),
            Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(_handled, Is.Zero);
    }

    [Test]
    public async Task FailedResponseLink_FailsTheCallAfterTheHandlerRan()
    {
        _network.Link(_b.PeerId, _a.PeerId).Fault = RpcLinkFault.Fail;

        Assert.That(await CodeOf(_a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None)),
            Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(_handled, Is.EqualTo(1));
    }

    [Test]
    public async Task TwoWayPartition_StallsCallsUntilTheirDeadline_AndHealRestoresThem()
    {
        _network.Partition(_a.PeerId, _b.PeerId);

        var call = _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, Within(5), CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(4));
        Assert.That(call.IsCompleted, Is.False);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(1));

        Assert.That(await CodeOf(call), Is.EqualTo(RpcStatusCode.DeadlineExceeded));
        _network.Heal();
        Assert.That(await _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, Within(5), CancellationToken.None), Is.EqualTo("pong"u8.ToArray()));
    }

    [Test]
    public async Task AsymmetricPartition_RequestsOneWayAreLost_AnswersTheOtherWayAreLost()
    {
        _network.PartitionOneWay(_a.PeerId, _b.PeerId);

        var aToB = _a.RequestAsync(_b.PeerId, "ping", ReadOnlyMemory<byte>.Empty, Within(5), CancellationToken.None);
        var bToA = _b.RequestAsync(_a.PeerId, "ping", ReadOnlyMemory<byte>.Empty, Within(5), CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(5));

        Assert.That(await CodeOf(aToB), Is.EqualTo(RpcStatusCode.DeadlineExceeded), "A's request never reached B");
        Assert.That(await CodeOf(bToA), Is.EqualTo(RpcStatusCode.DeadlineExceeded), "A answered, but the answer was lost on A→B");
        Assert.That(_handled, Is.EqualTo(1), "only B's request got through, to A's handler");
    }

    [Test]
    public async Task Crash_DuringACall_CallerGetsUnavailable_AndTheHandlerIsCancelled()
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
    }

    [Test]
    public async Task CallToAPeerNotOnTheNetwork_IsUnavailable()
    {
        Assert.That(await CodeOf(_a.RequestAsync(KeyPair.Generate().PeerId, "ping", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None)),
            Is.EqualTo(RpcStatusCode.Unavailable));
    }

    [Test]
    public async Task RequestBuffer_ReusedByTheCallerAfterSending_DoesNotChangeWhatTheServerGot()
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
    }

    [Test]
    public void CreateNode_TwiceWithOnePeerId_IsRefused()
    {
        Assert.That(() => _network.CreateNode(_a.PeerId), Throws.InvalidOperationException);
    }
}
