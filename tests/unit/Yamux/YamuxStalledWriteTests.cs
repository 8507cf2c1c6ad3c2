using System.IO.Pipelines;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>
/// Waiters for the session's write lock while a connection write is stalled, because the remote reads
/// nothing and the connection's buffers are full: a waiter whose token fires gives its turn up, and so
/// does the final go-away of a close once its grace has passed.
/// </summary>
[TestFixture]
public sealed class YamuxStalledWriteTests
{
    // Far below one data frame: a frame's write stalls until the remote reads.
    private const int PipeBytes = 1024;
    private const int StallingWrite = 60000;
    private static readonly TimeSpan GoAwayGrace = TimeSpan.FromSeconds(2);

    private static (YamuxSession Session, RawYamuxPeer Peer) Create(SimulationExecutor sim)
    {
        var (a, b) = DuplexStreamPair.Create(new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: PipeBytes, resumeWriterThreshold: PipeBytes / 2, useSynchronizationContext: false));
        // No keep-alive and no window tuning: nothing but the test's writes goes out.
        var session = new YamuxSession(a, isInitiator: true, new YamuxOptions
        {
            KeepAliveInterval = null,
            MaxStreamWindowSize = YamuxOptions.DefaultWindowSize,
            TimeProvider = sim.Clock,
        });
        return (session, new RawYamuxPeer(b));
    }

    private static byte[] Filled(int length, byte value)
    {
        var bytes = new byte[length];
        bytes.AsSpan().Fill(value);
        return bytes;
    }

    [Test]
    public void DisposeAsync_CompletesAfterTheGrace_WhileAWriteIsStalledByARemoteThatDoesNotRead() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer) = Create(sim);
        await using var _ = peer;
        var stream = await session.OpenStreamAsync(token);
        var stalled = stream.WriteAsync(Filled(StallingWrite, 0xAA), token).AsTask();
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(stalled.IsCompleted, Is.False, "the remote reads nothing: the write holds the session's write lock");

        var closing = session.DisposeAsync().AsTask();
        await sim.Clock.AdvanceAsync(GoAwayGrace - TimeSpan.FromMilliseconds(1));
        Assert.That(closing.IsCompleted, Is.False, "the final go-away waits for the write lock up to its grace");

        // Past the grace the go-away gives up its wait for the lock; the connection is then closed under the stalled write.
        await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(2));
        Assert.That(closing.IsCompleted, Is.True, "the close ends once the go-away's grace has passed");
        await closing;
        Assert.That(session.Completion.IsCompletedSuccessfully, Is.True);
        Assert.That(stalled.IsCompleted, Is.True, "the stalled write ends with the session");
        await Assert.ThatAsync(() => stalled, Throws.InstanceOf<IOException>());
    });

    [Test]
    public void QueuedWrite_WhoseTokenFires_GivesUpItsTurn_AndTheNextWriterSendsItsFrameWhole() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer) = Create(sim);
        await using var _ = session;
        await using var __ = peer;
        var first = await session.OpenStreamAsync(token);
        var cancelledStream = await session.OpenStreamAsync(token);
        var next = await session.OpenStreamAsync(token);
        var stalled = first.WriteAsync(Filled(StallingWrite, 0xAA), token).AsTask();
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(stalled.IsCompleted, Is.False, "the remote reads nothing: the write holds the session's write lock");

        using var cancel = new CancellationTokenSource();
        var cancelled = cancelledStream.WriteAsync(Filled(100, 0xBB), cancel.Token).AsTask();
        var queued = next.WriteAsync(Filled(100, 0xCC), token).AsTask();
        await sim.Clock.RunUntilIdleAsync();
        Assert.That((cancelled.IsCompleted, queued.IsCompleted), Is.EqualTo((false, false)), "both wait for the write lock");

        // Cancel, not CancelAsync: the callbacks must run here, on the simulation's thread.
        cancel.Cancel();
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(cancelled.IsCompleted, Is.True, "a waiter whose token fired stops waiting for the lock");
        await Assert.ThatAsync(() => cancelled, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(queued.IsCompleted, Is.False, "the stalled write still holds the lock");

        // The remote reads again: the stalled frame completes, and the lock passes over the cancelled waiter to the next.
        var (stalledFrame, stalledPayload) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Data, token);
        Assert.That((stalledFrame.StreamId, stalledFrame.Length), Is.EqualTo((first.Id, (uint)StallingWrite)));
        Assert.That(stalledPayload.AsSpan().IndexOfAnyExcept((byte)0xAA), Is.EqualTo(-1));
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(stalled.IsCompletedSuccessfully, Is.True);
        Assert.That(queued.IsCompleted, Is.True, "the next waiter got the lock the cancelled one gave up");
        await queued;

        var (queuedFrame, queuedPayload) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Data, token);
        Assert.That((queuedFrame.StreamId, queuedFrame.Length), Is.EqualTo((next.Id, 100u)), "the next frame is the queued writer's, whole");
        Assert.That(queuedPayload.AsSpan().IndexOfAnyExcept((byte)0xCC), Is.EqualTo(-1));

        // The cancelled write left its stream usable: a later write goes out whole.
        await cancelledStream.WriteAsync(Filled(200, 0xDD), token);
        var (laterFrame, laterPayload) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Data, token);
        Assert.That((laterFrame.StreamId, laterFrame.Length), Is.EqualTo((cancelledStream.Id, 200u)));
        Assert.That(laterPayload.AsSpan().IndexOfAnyExcept((byte)0xDD), Is.EqualTo(-1));
        Assert.That(session.IsClosed, Is.False);
    });
}
