using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>
/// <see cref="YamuxStream.HoldForFirstWrite"/>: held bytes (a negotiation answer) lead the stream's
/// next data frame, its FIN, or leave alone when a read must wait or the hold expires; a reset drops them.
/// </summary>
[TestFixture]
public sealed class YamuxHeldPrefixTests
{
    private const uint RemoteStream = 2;

    private static async Task<(YamuxSession Session, RawYamuxPeer Peer, YamuxStream Stream)> AcceptAsync(SimulationExecutor sim, byte[] request)
    {
        var (a, b) = DuplexStreamPair.Create();
        var session = new YamuxSession(a, isInitiator: true, new YamuxOptions
        {
            KeepAliveInterval = null,
            MaxStreamWindowSize = YamuxOptions.DefaultWindowSize,
            TimeProvider = sim.Clock,
        });
        var peer = new RawYamuxPeer(b);
        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.Syn, RemoteStream, (uint)request.Length, request);
        var stream = await session.AcceptStreamAsync(ackWithFirstWrite: true, CancellationToken.None);
        await sim.Clock.WaitUntilAsync(() => stream.DataAvailable, TimeSpan.FromSeconds(1));
        return (session, peer, stream);
    }

    /// <summary>The stream's next frame that is not its ACK.</summary>
    private static Task<(YamuxHeader Header, byte[] Payload)> NextFrameAsync(RawYamuxPeer peer) =>
        peer.ReadFrameAsync(h => h.StreamId == RemoteStream && h.Flags != YamuxFlags.Ack, CancellationToken.None);

    [Test]
    public void HeldBytes_LeadTheFirstWrite_InOneFrame() => SimulationTest.Run(async sim =>
    {
        var (session, peer, stream) = await AcceptAsync(sim, "req"u8.ToArray());
        await using var _ = session;
        await using var __ = peer;

        Assert.That(stream.HoldForFirstWrite("ans"u8, Timeout.InfiniteTimeSpan), Is.True);
        await stream.WriteAsync("resp"u8.ToArray());
        await stream.WriteAsync("more"u8.ToArray());

        var first = await NextFrameAsync(peer);
        var second = await NextFrameAsync(peer);
        Assert.That((first.Header.Type, first.Header.Flags, first.Payload), Is.EqualTo((YamuxFrameType.Data, YamuxFlags.None, "ansresp"u8.ToArray())));
        Assert.That(second.Payload, Is.EqualTo("more"u8.ToArray()));
    });

    [TestCase(true)]
    [TestCase(false)]
    public void HeldBytes_RideWithTheFin(bool dispose) => SimulationTest.Run(async sim =>
    {
        var (session, peer, stream) = await AcceptAsync(sim, "req"u8.ToArray());
        await using var _ = session;
        await using var __ = peer;

        stream.HoldForFirstWrite("ans"u8, Timeout.InfiniteTimeSpan);
        if (dispose) await stream.DisposeAsync();
        else await stream.CompleteWritesAsync();

        var frame = await NextFrameAsync(peer);
        Assert.That((frame.Header.Type, frame.Header.Flags, frame.Payload), Is.EqualTo((YamuxFrameType.Data, YamuxFlags.Fin, "ans"u8.ToArray())));
    });

    [Test]
    public void AReadThatMustWait_SendsTheHeldBytesAlone_AndLaterWritesFollowThem() => SimulationTest.Run(async sim =>
    {
        var (session, peer, stream) = await AcceptAsync(sim, "req"u8.ToArray());
        await using var _ = session;
        await using var __ = peer;
        stream.HoldForFirstWrite("ans"u8, Timeout.InfiniteTimeSpan);
        var buffer = new byte[16];

        Assert.That(await stream.ReadAsync(buffer), Is.EqualTo(3), "bytes already here are read without sending anything");
        var reading = stream.ReadAsync(buffer).AsTask();
        var answer = await NextFrameAsync(peer);
        await stream.WriteAsync("resp"u8.ToArray());
        var response = await NextFrameAsync(peer);

        Assert.That(answer.Payload, Is.EqualTo("ans"u8.ToArray()));
        Assert.That(response.Payload, Is.EqualTo("resp"u8.ToArray()));
        Assert.That(reading.IsCompleted, Is.False);
    });

    [Test]
    public void WaitingUntilReadable_SendsTheHeldBytesAlone_ThenWakesOnTheRemotesData() => SimulationTest.Run(async sim =>
    {
        var (session, peer, stream) = await AcceptAsync(sim, "req"u8.ToArray());
        await using var _ = session;
        await using var __ = peer;
        stream.HoldForFirstWrite("ans"u8, Timeout.InfiniteTimeSpan);
        Assert.That(await stream.ReadAsync(new byte[16]), Is.EqualTo(3));

        var readable = stream.WaitReadableAsync(CancellationToken.None).AsTask();
        var answer = await NextFrameAsync(peer);
        await peer.WriteFrameAsync(YamuxFrameType.Data, YamuxFlags.None, RemoteStream, 4, "more"u8.ToArray());

        Assert.That(answer.Payload, Is.EqualTo("ans"u8.ToArray()), "the remote may be waiting for the answer before it sends more");
        Assert.That(await readable, Is.True);
    });

    [Test]
    public void Hold_IsRefused_ForNothing_ForASecondPrefix_AndAfterTheFin() => SimulationTest.Run(async sim =>
    {
        var (session, peer, stream) = await AcceptAsync(sim, "req"u8.ToArray());
        await using var _ = session;
        await using var __ = peer;

        Assert.That(stream.HoldForFirstWrite(ReadOnlySpan<byte>.Empty, Timeout.InfiniteTimeSpan), Is.False);
        Assert.That(stream.HoldForFirstWrite("ans"u8, Timeout.InfiniteTimeSpan), Is.True);
        Assert.That(stream.HoldForFirstWrite("two"u8, Timeout.InfiniteTimeSpan), Is.False, "one prefix at a time");
        await stream.CompleteWritesAsync();
        var fin = await NextFrameAsync(peer);

        Assert.That(stream.HoldForFirstWrite("late"u8, Timeout.InfiniteTimeSpan), Is.False, "nothing may follow the FIN");
        Assert.That((fin.Header.Flags, fin.Payload), Is.EqualTo((YamuxFlags.Fin, "ans"u8.ToArray())));
    });

    [Test]
    public void HeldBytes_LeaveAlone_WhenTheHoldExpires() => SimulationTest.Run(async sim =>
    {
        var (session, peer, stream) = await AcceptAsync(sim, "req"u8.ToArray());
        await using var _ = session;
        await using var __ = peer;
        stream.HoldForFirstWrite("ans"u8, TimeSpan.FromMilliseconds(50));

        var frame = NextFrameAsync(peer);
        await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(49));
        Assert.That(frame.IsCompleted, Is.False);
        await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(1));

        Assert.That((await frame).Payload, Is.EqualTo("ans"u8.ToArray()));
    });

    [Test]
    public void Reset_DropsTheHeldBytes() => SimulationTest.Run(async sim =>
    {
        var (session, peer, stream) = await AcceptAsync(sim, "req"u8.ToArray());
        await using var _ = session;
        await using var __ = peer;
        stream.HoldForFirstWrite("ans"u8, Timeout.InfiniteTimeSpan);

        stream.Reset();

        var frame = await NextFrameAsync(peer);
        Assert.That((frame.Header.Type, frame.Header.Flags), Is.EqualTo((YamuxFrameType.WindowUpdate, YamuxFlags.Rst)));
        Assert.That(stream.HoldForFirstWrite("late"u8, Timeout.InfiniteTimeSpan), Is.False);
    });
}
