using System.Buffers;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Rpc;

/// <summary>The RPC stream's messages: uvarint-length-prefixed MessagePack (see <see cref="RpcNode"/>).</summary>
internal static class RpcFrames
{
    /// <summary>Reads one message; null when the stream ends cleanly before its first byte.</summary>
    /// <exception cref="MessageTooLargeException">The prefix announces more than <paramref name="maxLength"/> bytes (checked before reading the body).</exception>
    /// <exception cref="MalformedMessageException">The prefix or the body is not valid.</exception>
    /// <exception cref="EndOfStreamException">The stream ended inside the message.</exception>
    public static async ValueTask<T?> ReadAsync<T>(Stream stream, int maxLength, CancellationToken cancellationToken)
        where T : class
    {
        var length = await LengthPrefixedMessage.ReadLengthAsync(stream, maxLength, cancellationToken);
        return length is null ? null : await ReadBodyAsync<T>(stream, length.Value, cancellationToken);
    }

    /// <summary>
    /// The body of a message whose prefix announced <paramref name="length"/> bytes, read as it arrives
    /// (<see cref="LengthPrefixedMessage.ReadBodyRentedAsync"/>).
    /// </summary>
    /// <exception cref="MalformedMessageException">The body is not valid.</exception>
    /// <exception cref="EndOfStreamException">The stream ended inside the message.</exception>
    public static async ValueTask<T> ReadBodyAsync<T>(Stream stream, int length, CancellationToken cancellationToken)
        where T : class
    {
        // The decoder copies what it keeps (payload bytes included), so the body can come from the pool.
        var buffer = await LengthPrefixedMessage.ReadBodyRentedAsync(stream, length, cancellationToken);
        try
        {
            return MessagePackRpcCodec<T>.Instance.Decode(buffer.AsMemory(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// <paramref name="message"/> encoded as one frame (uvarint length prefix, then the body) in a
    /// pooled buffer; the caller disposes it once the frame is written.
    /// </summary>
    public static PrefixedFrameWriter Encode<T>(T message, int sizeHint = 256)
        where T : class
    {
        var frame = new PrefixedFrameWriter(sizeHint);
        try
        {
            MessagePackRpcCodec<T>.Instance.Encode(frame, message);
            return frame;
        }
        catch
        {
            frame.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes one message with a single write call; with <paramref name="complete"/> the stream's
    /// close (Yamux FIN) travels in the same frame, as the last answer of a call does.
    /// </summary>
    public static async ValueTask WriteAsync<T>(YamuxStream stream, T message, bool complete, CancellationToken cancellationToken)
        where T : class
    {
        using var frame = Encode(message);
        if (complete) await stream.WriteAndCompleteAsync(frame.Frame(), cancellationToken);
        else await stream.WriteAsync(frame.Frame(), cancellationToken);
    }
}
