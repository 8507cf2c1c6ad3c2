using System.Buffers;
using System.Buffers.Binary;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>The libp2p Noise wire frame: a 16-bit big-endian length, then that many bytes (≤ 65535).</summary>
internal static class NoiseFraming
{
    public const int HeaderSize = 2;
    public const int MaxFrameSize = ushort.MaxValue;
    public const int MaxPlaintextSize = MaxFrameSize - CipherState.TagSize;
    public const int MaxFramedSize = HeaderSize + MaxFrameSize;

    /// <summary>
    /// Reads one whole frame into <paramref name="buffer"/> (≥ 65535 bytes) without reading past it,
    /// so bytes after a handshake message stay in the insecure stream for the transport phase.
    /// </summary>
    /// <exception cref="NoiseException">The stream ended before or inside the frame.</exception>
    public static async ValueTask<int> ReadFrameAsync(Stream stream, byte[] buffer, CancellationToken cancellationToken)
    {
        await ReadExactAsync(stream, buffer.AsMemory(0, HeaderSize), cancellationToken);
        int length = BinaryPrimitives.ReadUInt16BigEndian(buffer);
        await ReadExactAsync(stream, buffer.AsMemory(0, length), cancellationToken);
        return length;
    }

    /// <summary>
    /// Reads one whole frame into <paramref name="buffer"/>, which grows (from the pool) when the frame
    /// needs more: handshake messages are a few hundred bytes, and a 64 KiB buffer per handshake would
    /// be mostly untouched memory.
    /// </summary>
    /// <exception cref="NoiseException">The stream ended before or inside the frame.</exception>
    public static async ValueTask<int> ReadFrameAsync(Stream stream, PooledBuffer buffer, CancellationToken cancellationToken)
    {
        await ReadExactAsync(stream, buffer.Array.AsMemory(0, HeaderSize), cancellationToken);
        int length = BinaryPrimitives.ReadUInt16BigEndian(buffer.Array);
        buffer.Ensure(length);
        await ReadExactAsync(stream, buffer.Array.AsMemory(0, length), cancellationToken);
        return length;
    }

    /// <summary>A pooled array that is swapped for a larger pooled one on demand; whoever holds this returns <see cref="Array"/> once.</summary>
    internal sealed class PooledBuffer(int initialSize)
    {
        public byte[] Array { get; private set; } = ArrayPool<byte>.Shared.Rent(initialSize);

        public void Ensure(int size)
        {
            if (Array.Length >= size) return;
            var larger = ArrayPool<byte>.Shared.Rent(size);
            var old = Array;
            // Swapped before the old one goes back, so a failure later never returns it twice.
            Array = larger;
            ArrayPool<byte>.Shared.Return(old);
        }

        public void Return()
        {
            var array = Array;
            Array = [];
            if (array.Length > 0) ArrayPool<byte>.Shared.Return(array);
        }
    }

    public static async ValueTask WriteFrameAsync(Stream stream, byte[] frame, int messageLength, CancellationToken cancellationToken)
    {
        if (messageLength > MaxFrameSize) throw new ArgumentOutOfRangeException(nameof(messageLength));
        BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)messageLength);
        await stream.WriteAsync(frame.AsMemory(0, HeaderSize + messageLength), cancellationToken);
        await stream.FlushAsync(cancellationToken);
    }

    private static async ValueTask ReadExactAsync(Stream stream, Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            var read = await stream.ReadAsync(destination, cancellationToken);
            if (read == 0) throw new NoiseException("connection closed during the handshake (truncated frame)");
            destination = destination[read..];
        }
    }
}
