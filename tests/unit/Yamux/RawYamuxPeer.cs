using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>A hand-driven yamux peer: writes exactly the frames a test crafts and reads the session's replies.</summary>
internal sealed class RawYamuxPeer(Stream stream) : IAsyncDisposable
{
    public Stream Stream { get; } = stream;

    public async Task WriteFrameAsync(YamuxFrameType type, YamuxFlags flags, uint streamId, uint length, byte[]? payload = null)
    {
        var bytes = new byte[YamuxHeader.Size + (payload?.Length ?? 0)];
        new YamuxHeader(type, flags, streamId, length).Write(bytes);
        payload?.CopyTo(bytes, YamuxHeader.Size);
        await Stream.WriteAsync(bytes);
    }

    public async Task WriteRawAsync(byte[] bytes) => await Stream.WriteAsync(bytes);

    /// <summary>
    /// The next frame matching <paramref name="match"/>; others (e.g. the session's RTT ping) are skipped.
    /// Reads on the caller's context, so a read left waiting in a simulation stays on its thread.
    /// </summary>
    public async Task<(YamuxHeader Header, byte[] Payload)> ReadFrameAsync(Func<YamuxHeader, bool> match, CancellationToken cancellationToken)
    {
        while (true)
        {
            var headerBytes = new byte[YamuxHeader.Size];
            await Stream.ReadExactOnContextAsync(headerBytes, cancellationToken);
            var header = YamuxHeader.Read(headerBytes);
            var payload = header.Type == YamuxFrameType.Data ? new byte[header.Length] : [];
            await Stream.ReadExactOnContextAsync(payload, cancellationToken);
            if (match(header))
            {
                return (header, payload);
            }
        }
    }

    public ValueTask DisposeAsync() => Stream.DisposeAsync();
}
