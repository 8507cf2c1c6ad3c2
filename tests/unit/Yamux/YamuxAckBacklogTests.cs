using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>
/// The spec's ACK backlog (at most 256 of our streams unacknowledged) and the session's slots behind
/// it and behind the write lock: granted in turn, given up by a cancelled or failed waiter without
/// losing a slot.
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class YamuxAckBacklogTests
{
    private const int Backlog = 256;

    private static (YamuxSession Session, RawYamuxPeer Peer) Create()
    {
        var (a, b) = DuplexStreamPair.Create();
        return (new YamuxSession(a, isInitiator: true, new YamuxOptions { KeepAliveInterval = null }), new RawYamuxPeer(b));
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
    public async Task OpenStream_PastTheBacklog_WaitsForAnAck_InTurn(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;
        var streams = await FillBacklogAsync(session, token);

        var first = session.OpenStreamAsync(token).AsTask();
        var second = session.OpenStreamAsync(token).AsTask();
        await Task.Delay(50, token);
        Assert.That((first.IsCompleted, second.IsCompleted), Is.EqualTo((false, false)));

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Ack, streams[0].Id, 0);
        var opened = await first.WaitAsync(token);
        Assert.That(opened.Id, Is.EqualTo(streams[^1].Id + 2));
        await Task.Delay(50, token);
        Assert.That(second.IsCompleted, Is.False);

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Ack, streams[1].Id, 0);
        Assert.That((await second.WaitAsync(token)).Id, Is.EqualTo(opened.Id + 2));
    }

    [Test]
    public async Task OpenStream_CancelledWhileWaiting_GivesItsTurnUp_WithoutLosingTheSlot(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var _ = session;
        await using var __ = peer;
        var streams = await FillBacklogAsync(session, token);

        using var cancel = new CancellationTokenSource();
        var cancelled = session.OpenStreamAsync(cancel.Token).AsTask();
        var next = session.OpenStreamAsync(token).AsTask();
        await cancel.CancelAsync();
        Assert.That(async () => await cancelled.WaitAsync(token), Throws.InstanceOf<OperationCanceledException>());

        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Ack, streams[0].Id, 0);
        await next.WaitAsync(token);

        // A stream that ends before its ACK gives its slot back as well: the next open needs no wait.
        streams[1].Reset();
        var again = session.OpenStreamAsync(token).AsTask();
        await again.WaitAsync(token);
    }

    [Test]
    public async Task OpenStream_WaitingForTheBacklog_FailsWhenTheSessionCloses(CancellationToken token)
    {
        var (session, peer) = Create();
        await using var __ = peer;
        await FillBacklogAsync(session, token);

        var waiting = session.OpenStreamAsync(token).AsTask();
        await Task.Delay(50, token);
        Assert.That(waiting.IsCompleted, Is.False);
        await session.DisposeAsync();

        Assert.That(async () => await waiting.WaitAsync(token), Throws.TypeOf<YamuxException>());
    }

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
