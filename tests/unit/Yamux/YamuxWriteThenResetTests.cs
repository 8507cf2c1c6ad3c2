using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;
using P2PInference.Tests.Unit.Noise;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>
/// A write whose bytes have all left succeeds, even when the remote's reset (its answer to them)
/// is read before the write's own continuation runs: the reset is the next read's to report.
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class YamuxWriteThenResetTests
{
    [Test]
    public async Task Write_WhoseBytesLeft_Succeeds_WhenTheRemotesResetArrivesBeforeItReturns(CancellationToken token)
    {
        var (a, b) = DuplexStreamPair.Create();
        var gate = new ResetBeforeWriteReturns(a);
        await using var session = new YamuxSession(gate, isInitiator: true, new YamuxOptions { KeepAliveInterval = null });
        await using var peer = new RawYamuxPeer(b);
        var stream = await session.OpenStreamAsync(token);
        await peer.ReadFrameAsync(h => h.StreamId == stream.Id && h.Flags.HasFlag(YamuxFlags.Syn), token);
        var read = stream.ReadAsync(new byte[16], token).AsTask();
        // The remote reads the data frame and resets the stream; the session reads that reset before the write returns.
        gate.OnDataFrameSent = async () =>
        {
            var (frame, payload) = await peer.ReadFrameAsync(h => h.StreamId == stream.Id && h.Type == YamuxFrameType.Data, token);
            Assert.That(payload, Is.EqualTo(new byte[] { 1, 2, 3 }));
            await peer.WriteFrameAsync(YamuxFrameType.WindowUpdate, YamuxFlags.Rst, stream.Id, 0);
            await Task.WhenAny(read);
        };

        await stream.WriteAsync(new byte[] { 1, 2, 3 }, token);

        Assert.That(gate.DataFramesSent, Is.EqualTo(1));
        Assert.That(async () => await read, Throws.InstanceOf<YamuxStreamResetException>(), "the reset reaches the reader");
        Assert.That(async () => await stream.WriteAsync(new byte[] { 4 }, token), Throws.InstanceOf<YamuxStreamResetException>(),
            "a write after the reset was read fails");
    }

    /// <summary>Runs <see cref="OnDataFrameSent"/> after a data frame's bytes have gone through, before its write completes.</summary>
    private sealed class ResetBeforeWriteReturns(Stream inner) : PassThroughStream(inner)
    {
        public Func<Task>? OnDataFrameSent { get; set; }

        public int DataFramesSent { get; private set; }

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Inner.WriteAsync(buffer, cancellationToken);
            await Inner.FlushAsync(cancellationToken);
            if (OnDataFrameSent is { } sent && buffer.Length > YamuxHeader.Size && YamuxHeader.Read(buffer.Span).Type == YamuxFrameType.Data)
            {
                OnDataFrameSent = null;
                DataFramesSent++;
                await sent();
            }
        }
    }
}
