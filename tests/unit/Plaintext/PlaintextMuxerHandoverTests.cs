using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;
using P2PInference.Tests.Unit.Yamux;

namespace P2PInference.Tests.Unit.Plaintext;

/// <summary>
/// A plaintext dialer's muxer takes the transport itself only when the upgrade buffered nothing: the
/// listener's first Yamux frames may come in the same transport read as its answer to the muxer proposal.
/// </summary>
[TestFixture]
public sealed class PlaintextMuxerHandoverTests
{
    private const uint ListenerStream = 2;
    private const uint FirstPing = 42;
    private const uint SecondPing = 43;

    [Test]
    public void Dialer_HandlesTheListenersFirstYamuxFrames_WhenTheyCameInTheReadOfTheMuxerAnswer() => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        var dialerKey = KeyPair.Generate();
        var listenerKey = KeyPair.Generate();
        var (dialerEnd, listenerEnd) = DuplexStreamPair.Create();
        var raw = new RawConnection(dialerEnd, Multiaddress.Parse("/memory/dialer"), Multiaddress.Parse("/memory/listener"));
        var options = new HostOptions
        {
            Identity = dialerKey,
            Transports = [],
            TimeProvider = sim.Clock,
            SecurityProtocols = [PlaintextHandshake.ProtocolId],
            Yamux = new YamuxOptions { KeepAliveInterval = null },
        };
        var dialing = ConnectionUpgrader.UpgradeAsync(raw, ConnectionDirection.Outbound, listenerKey.PeerId, options, ct);

        // The listener by hand, over a stream that holds its writes until it next reads: its muxer answer,
        // a stream it opens at once (SYN with data) and a ping leave in one transport write.
        var listener = new UpgradeStream(listenerEnd);
        await MultistreamSelect.HandleAsync(listener, [PlaintextHandshake.ProtocolId], ct);
        await PlaintextHandshake.RespondAsync(listener, listenerKey, ct);
        await MultistreamSelect.HandleAsync(listener, [ConnectionUpgrader.YamuxProtocolId], ct);
        var hello = "hello"u8.ToArray();
        var frames = new byte[2 * YamuxHeader.Size + hello.Length];
        new YamuxHeader(YamuxFrameType.Data, YamuxFlags.Syn, ListenerStream, (uint)hello.Length).Write(frames);
        hello.CopyTo(frames, YamuxHeader.Size);
        new YamuxHeader(YamuxFrameType.Ping, YamuxFlags.Syn, 0, FirstPing).Write(frames.AsSpan(YamuxHeader.Size + hello.Length));
        await listener.WriteAsync(frames, ct);
        await listener.SendHeldAsync(ct);
        await using var peer = new RawYamuxPeer(listener.Detach(out var received, out var unsent));
        Assert.That((received.Length, unsent.Length), Is.EqualTo((0, 0)), "the listener's handshake left nothing behind");

        var connection = await dialing;
        await using var _ = connection;
        await peer.WriteFrameAsync(YamuxFrameType.Ping, YamuxFlags.Syn, 0, SecondPing);

        // Frames are handled in order: the first pong answers the ping that came with the muxer answer, or that ping was lost.
        var (firstPong, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Ack, ct);
        Assert.That(firstPong.Length, Is.EqualTo(FirstPing), "the ping that came in the muxer answer's read is answered");
        var (secondPong, _) = await peer.ReadFrameAsync(h => h.Type == YamuxFrameType.Ping && h.Flags == YamuxFlags.Ack, ct);
        Assert.That(secondPong.Length, Is.EqualTo(SecondPing));

        var stream = await connection.Session.AcceptStreamAsync(ct);
        Assert.That(stream.Id, Is.EqualTo(ListenerStream));
        var data = new byte[hello.Length];
        await stream.ReadExactlyAsync(data, ct);
        Assert.That(data, Is.EqualTo(hello), "the stream's first data came with its SYN");
    });
}
