using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>
/// The spec's ACK backlog (at most 256 of our streams unacknowledged) and the session's slots behind
/// it and behind the write lock: granted in turn, given up by a cancelled or failed waiter without
/// losing a slot.
/// </summary>
[TestFixture]
public sealed class YamuxAckBacklogTests
{
    private const int Backlog = 256;

    // Created inside the simulation: the pipe pair then hands data over inline, and the session's timers
    // (the close's go-away grace) run on the simulation's clock.
    private static (YamuxSession Session, RawYamuxPeer Peer) Create(SimulationExecutor sim)
    {
        var (a, b) = DuplexStreamPair.Create();
        return (new YamuxSession(a, isInitiator: true, new YamuxOptions { KeepAliveInterval = null, TimeProvider = sim.Clock }), new RawYamuxPeer(b));
    }

    private static async Task<List<YamuxStream>> FillBacklogAsync(YamuxSession session, CancellationToken token)
    {
        var streams = new List<YamuxStream>();
        for (var i = 0; i < Backlog; i++)
        {
            streams.Add(await session.OpenStreamAsync(token));
        }

        return streams;
    }

    [Test]
    public void OpenStream_PastTheBacklog_WaitsForAnAck_InTurn() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer) = Create(sim);
        await using var _ = session;
        await using var __ = peer;
        var streams = await FillBacklogAsync(session, token);

        var first = session.OpenStreamAsync(token).AsTask();
        var second = session.OpenStreamAsync(token).AsTask();
        // Idle: everything runnable has run, so an open still pending is one that waits for an ACK.
        await sim.Clock.RunUntilIdleAsync();
        Assert.That((first.IsCompleted, second.IsCompleted), Is.EqualTo((false, false)));

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Ack, streams[0].Id, 0);
        var opened = await first;
        Assert.That(opened.Id, Is.EqualTo(streams[^1].Id + 2));
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(second.IsCompleted, Is.False);

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Ack, streams[1].Id, 0);
        Assert.That((await second).Id, Is.EqualTo(opened.Id + 2));
    });

    [Test]
    public void OpenStream_CancelledWhileWaiting_GivesItsTurnUp_WithoutLosingTheSlot() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer) = Create(sim);
        await using var _ = session;
        await using var __ = peer;
        var streams = await FillBacklogAsync(session, token);

        using var cancel = new CancellationTokenSource();
        var cancelled = session.OpenStreamAsync(cancel.Token).AsTask();
        var next = session.OpenStreamAsync(token).AsTask();
        // Cancel, not CancelAsync: the callbacks run here, on the simulation's thread.
        cancel.Cancel();
        await Assert.ThatAsync(() => cancelled, Throws.InstanceOf<OperationCanceledException>());

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Ack, streams[0].Id, 0);
        await next;

        // A stream that ends before its ACK gives its slot back as well: the next open needs no wait.
        streams[1].Reset();
        await session.OpenStreamAsync(token);
    });

    [Test]
    public void OpenStream_WaitingForTheBacklog_FailsWhenTheSessionCloses() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer) = Create(sim);
        await using var __ = peer;
        await FillBacklogAsync(session, token);

        var waiting = session.OpenStreamAsync(token).AsTask();
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(waiting.IsCompleted, Is.False);
        await session.DisposeAsync();

        await Assert.ThatAsync(() => waiting, Throws.TypeOf<YamuxException>());
    });

    [Test]
    public void Slots_AreGrantedFirstInFirstOut_AndSkipWaitersThatGaveUp()
    {
        var slots = new YamuxSlots(1);
        Assert.That(slots.TryTake(), Is.True);
        Assert.That(slots.TryTake(), Is.False);
        var first = slots.Enqueue();
        var second = slots.Enqueue();
        var third = slots.Enqueue();

        // The second waiter gives up (its token fired): the slot it would have had goes on to the third.
        Assert.That(second.TrySetResult(false), Is.True);
        slots.Release();
        Assert.That((first.Task.IsCompleted, first.Task.Result), Is.EqualTo((true, true)));
        Assert.That(third.Task.IsCompleted, Is.False);
        slots.Release();
        Assert.That((third.Task.IsCompleted, third.Task.Result), Is.EqualTo((true, true)));

        // Nobody waits any more: the slot is free again, once.
        slots.Release();
        Assert.That(slots.TryTake(), Is.True);
        Assert.That(slots.TryTake(), Is.False);
    }

    [Test]
    public void Slots_FailAll_EndsEveryWait_AndKeepsTheCount()
    {
        var slots = new YamuxSlots(1);
        Assert.That(slots.TryTake(), Is.True);
        var waiters = new[] { slots.Enqueue(), slots.Enqueue() };

        slots.FailAll();

        Assert.That(waiters.Select(w => (w.Task.IsCompleted, w.Task.Result)), Is.All.EqualTo((true, false)));
        slots.Release();
        Assert.That(slots.TryTake(), Is.True);
        Assert.That(slots.TryTake(), Is.False);
    }

    [Test]
    public void Slots_ReleasedOnceTooOften_Throw_RatherThanLetTwoHoldersIn()
    {
        var slots = new YamuxSlots(1);
        Assert.That(slots.TryTake(), Is.True);
        slots.Release();

        Assert.That(() => slots.Release(), Throws.TypeOf<SemaphoreFullException>());
        Assert.That(slots.TryTake(), Is.True);
        Assert.That(slots.TryTake(), Is.False, "still one slot");
    }

    [Test]
    public void InlineQueue_KeepsOrder_AcrossItsInlineItemAndTheOverflow_AndIsReusableOnceEmpty()
    {
        var queue = new YamuxInlineQueue<int>();
        Assert.That(queue.TryDequeue(out _), Is.False);
        var next = 0;
        var expected = 0;
        // Interleaved: the queue empties, holds one, and holds several, in every order of the two.
        foreach (var (add, take) in new[] { (1, 1), (3, 1), (1, 2), (4, 4), (2, 0), (0, 2), (1, 2) })
        {
            for (var i = 0; i < add; i++)
            {
                queue.Enqueue(next++);
            }

            for (var i = 0; i < take; i++)
            {
                Assert.That(queue.TryDequeue(out var item), Is.True);
                Assert.That(item, Is.EqualTo(expected++));
            }

            Assert.That(queue.Count, Is.EqualTo(next - expected));
        }

        Assert.That(queue.TryDequeue(out _), Is.False);
        Assert.That(queue.Count, Is.Zero);
    }
}
