using System.Buffers;

namespace P2PInference.Facilities.Threading;

/// <summary>
/// Stream loops that resume on the caller's context. The BCL's <see cref="Stream.ReadExactlyAsync(Memory{byte}, CancellationToken)"/>,
/// <see cref="Stream.ReadAtLeastAsync"/> and <see cref="Stream.CopyToAsync(Stream, CancellationToken)"/> await
/// without capturing the context; under a <see cref="SynchronizationContext"/> the runtime never inlines such a
/// continuation and sends it to the thread pool, so in a single-threaded simulation they leave its thread.
/// </summary>
public static class ContextStreams
{
    /// <summary>Fills <paramref name="buffer"/>, like <see cref="Stream.ReadExactlyAsync(Memory{byte}, CancellationToken)"/>.</summary>
    /// <exception cref="EndOfStreamException">The stream ended first.</exception>
    public static async ValueTask ReadExactOnContextAsync(this Stream stream, Memory<byte> buffer, CancellationToken cancellationToken) =>
        await stream.ReadAtLeastOnContextAsync(buffer, buffer.Length, throwOnEndOfStream: true, cancellationToken);

    /// <summary>Reads at least <paramref name="minimumBytes"/>, like <see cref="Stream.ReadAtLeastAsync"/>.</summary>
    /// <exception cref="EndOfStreamException">The stream ended first and <paramref name="throwOnEndOfStream"/> is set.</exception>
    public static async ValueTask<int> ReadAtLeastOnContextAsync(this Stream stream, Memory<byte> buffer, int minimumBytes, bool throwOnEndOfStream, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minimumBytes, buffer.Length);
        var total = 0;
        while (total < minimumBytes)
        {
            var read = await stream.ReadAsync(buffer[total..], cancellationToken);
            if (read == 0)
            {
                if (throwOnEndOfStream) throw new EndOfStreamException($"the stream ended after {total} of {minimumBytes} bytes");
                break;
            }
            total += read;
        }
        return total;
    }

    /// <summary>Copies until the source ends, like <see cref="Stream.CopyToAsync(Stream, CancellationToken)"/>.</summary>
    public static async Task CopyToOnContextAsync(this Stream source, Stream destination, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            int read;
            while ((read = await source.ReadAsync(buffer, cancellationToken)) > 0)
                await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
