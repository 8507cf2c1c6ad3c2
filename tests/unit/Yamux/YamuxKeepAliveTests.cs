using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Yamux;

[TestFixture]
public sealed class YamuxKeepAliveTests
{
    private static (YamuxSession Session, RawYamuxPeer Peer, SimulationClock Time) Create(SimulationExecutor sim)
    {
        var time = sim.Clock;
        var (a, b) = DuplexStreamPair.Create();
        var options = new YamuxOptions
        {
            KeepAliveInterval = TimeSpan.FromSeconds(10),
            KeepAliveTimeout = TimeSpan.FromSeconds(5),
            MaxStreamWindowSize = YamuxOptions.DefaultWindowSize,
            TimeProvider = time,
        };
        return (new YamuxSession(a, isInitiator: true, options), new RawYamuxPeer(b), time);
    }

    [Test]
    public void Ping_MeasuresRoundTripOnTimeProvider() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer, time) = Create(sim);
        await using var _ = session;
        await using var __ = peer;

        var ping = session.PingAsync(token);
        var (request, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping, token);
        await time.AdvanceAsync(TimeSpan.FromMilliseconds(5));
        await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Ack, 0, request.Length);

        Assert.That(request.Flags, Is.EqualTo(YamuxFlags.Syn));
        Assert.That(await ping, Is.EqualTo(TimeSpan.FromMilliseconds(5)));
    });

    [Test]
    public void KeepAlive_ClosesSession_WhenPeerStopsAnswering() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer, time) = Create(sim);
        await using var _ = session;
        await using var __ = peer;
        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 2, 0);
        var stream = await session.AcceptStreamAsync(token);

        await time.AdvanceAsync(TimeSpan.FromSeconds(10));
        var (probe, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping, token);
        Assert.That(probe.Flags, Is.EqualTo(YamuxFlags.Syn));
        Assert.That(session.IsClosed, Is.False);

        await time.AdvanceAsync(TimeSpan.FromSeconds(5));

        await Assert.ThatAsync(() => session.Completion.WaitOrCancelAsync(token),
            Throws.TypeOf<YamuxException>().With.Message.Contain("keep-alive"));
        await Assert.ThatAsync(async () => await stream.ReadAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());
    });

    [Test]
    public void KeepAlive_ClosesSession_WhenThePeerStopsReadingButKeepsSending() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer, time) = Create(sim);
        await using var _ = session;
        await using var __ = peer;
        await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, 2, 8 << 20);
        var stream = await session.AcceptStreamAsync(token);

        // More than the connection buffers (1 MiB) while the peer reads nothing: our write stalls, holding
        // the session's write lock, and the keep-alive probe cannot leave.
        var write = stream.WriteAsync(new byte[3 << 20], token).AsTask();
        for (var second = 0; second < 15; second += 3)
        {
            // The peer still talks: its own pings arrive every 3 s, so it never looks silent.
            await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Syn, 0, 7000u + (uint)second);
            await time.AdvanceAsync(TimeSpan.FromSeconds(3));
        }

        Assert.That(write.IsCompleted, Is.True, "the stalled write ended with the session");
        await Assert.ThatAsync(() => session.Completion.WaitOrCancelAsync(token),
            Throws.TypeOf<YamuxException>().With.Message.Contain("stopped reading"));
        await Assert.ThatAsync(() => write, Throws.InstanceOf<IOException>());
    });

    [Test]
    public void KeepAlive_KeepsSessionOpen_WhenPeerAnswers() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer, time) = Create(sim);
        await using var _ = session;
        await using var __ = peer;

        for (var round = 0; round < 3; round++)
        {
            // Probes go out at 10 s, 20 s, 30 s; each deadline falls 5 s after its probe.
            await time.AdvanceAsync(TimeSpan.FromSeconds(round == 0 ? 10 : 5));
            var (probe, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Syn, token);
            await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Ack, 0, probe.Length);

            // Frames are handled in order: once our own ping is answered, the pong above was seen.
            await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Syn, 0, 1000u + (uint)round);
            await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Ack, token);
            await time.AdvanceAsync(TimeSpan.FromSeconds(5));
        }

        Assert.That(session.IsClosed, Is.False);
    });

    [Test]
    public void KeepAlive_AStaleDeadlineRunningAfterTheNextProbeLeft_DoesNotCloseAHealthySession() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer) = CreateWithLateTimerCallbacks(sim);
        await using var _ = session;
        await using var __ = peer;

        for (var round = 0; round < 3; round++)
        {
            // Past the late callbacks: the probe is out, and a deadline due with it has run.
            await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(10) + Lags);
            var (probe, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Syn, token);
            await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Ack, 0, probe.Length);
        }

        Assert.That(session.IsClosed, Is.False, "every probe was answered within milliseconds");
    });

    [Test]
    public void KeepAlive_StillClosesAfterALateDeadline_WhenTheCurrentProbeGoesUnanswered() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var (session, peer) = CreateWithLateTimerCallbacks(sim);
        await using var _ = session;
        await using var __ = peer;

        var start = sim.Clock.GetUtcNow();
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(10) + Lags);
        var (first, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Syn, token);
        await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Ack, 0, first.Length);
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(10) + Lags);
        // The second probe (sent at 20 s) is never answered.
        await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Syn, token);

        await Assert.ThatAsync(() => session.Completion.WaitOrCancelAsync(token),
            Throws.TypeOf<YamuxException>().With.Message.Contain("keep-alive"));
        Assert.That(sim.Clock.GetUtcNow() - start, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(30)).And.LessThan(TimeSpan.FromSeconds(31)),
            "the second probe's own timeout closed the session, not the first probe's stale deadline");
    });

    private static readonly TimeSpan Lags = TimeSpan.FromMilliseconds(5);

    /// <summary>
    /// The defaults' shape, interval = timeout, so one probe's deadline and the next tick fall due together;
    /// callbacks run late, the deadline's later than the tick's, as a busy thread pool may run them.
    /// </summary>
    private static (YamuxSession Session, RawYamuxPeer Peer) CreateWithLateTimerCallbacks(SimulationExecutor sim)
    {
        var (a, b) = DuplexStreamPair.Create();
        var session = new YamuxSession(a, isInitiator: true, new YamuxOptions
        {
            KeepAliveInterval = TimeSpan.FromSeconds(10),
            KeepAliveTimeout = TimeSpan.FromSeconds(10),
            MaxStreamWindowSize = YamuxOptions.DefaultWindowSize,
            TimeProvider = new LateCallbacks(sim.Clock, periodicLag: TimeSpan.FromMilliseconds(1), oneShotLag: TimeSpan.FromMilliseconds(2)),
        });
        return (session, new RawYamuxPeer(b));
    }

    /// <summary>
    /// A clock whose timers run their callbacks late, past any re-arming in between: a thread pool slow to
    /// dispatch them. Periodic and one-shot timers lag by different amounts, which decides their order.
    /// </summary>
    private sealed class LateCallbacks(TimeProvider inner, TimeSpan periodicLag, TimeSpan oneShotLag) : TimeProvider
    {
        public override long GetTimestamp() => inner.GetTimestamp();

        public override long TimestampFrequency => inner.TimestampFrequency;

        public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var lag = period == Timeout.InfiniteTimeSpan ? oneShotLag : periodicLag;
            return inner.CreateTimer(_ => inner.CreateTimer(_ => callback(state), null, lag, Timeout.InfiniteTimeSpan), null, dueTime, period);
        }
    }
}
