using System.Buffers;

namespace P2PInference.Facilities.Encoding;

/// <summary>Unsigned LEB128 varints as multiformats and protobuf use them.</summary>
public static class Varint
{
    /// <summary>The longest encoding of a 64-bit value.</summary>
    public const int MaxLength = 10;

    public static int GetLength(ulong value)
    {
        var n = 1;
        while (value >= 0x80) { value >>= 7; n++; }
        return n;
    }

    public static int Write(Span<byte> destination, ulong value)
    {
        var i = 0;
        while (value >= 0x80)
        {
            destination[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[i++] = (byte)value;
        return i;
    }

    public static void Write(IBufferWriter<byte> writer, ulong value)
    {
        var span = writer.GetSpan(MaxLength);
        writer.Advance(Write(span, value));
    }

    public static byte[] Encode(ulong value)
    {
        var bytes = new byte[GetLength(value)];
        Write(bytes, value);
        return bytes;
    }

    /// <summary>
    /// Reads a varint. Returns false when <paramref name="source"/> ends before the varint does;
    /// throws <see cref="FormatException"/> for an encoding longer than 64 bits or not minimal.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out ulong value, out int consumed)
    {
        value = 0;
        for (var i = 0; i < source.Length && i < MaxLength; i++)
        {
            var b = source[i];
            if (i == MaxLength - 1 && b > 1)
                throw new FormatException("varint overflows 64 bits");
            value |= (ulong)(b & 0x7F) << (7 * i);
            if (b < 0x80)
            {
                if (b == 0 && i > 0)
                    throw new FormatException("varint is not minimally encoded");
                consumed = i + 1;
                return true;
            }
        }
        if (source.Length >= MaxLength)
            throw new FormatException("varint overflows 64 bits");
        consumed = 0;
        return false;
    }

    /// <summary>Reads a varint that must be complete within <paramref name="source"/>.</summary>
    public static ulong Read(ReadOnlySpan<byte> source, out int consumed)
    {
        if (!TryRead(source, out var value, out consumed))
            throw new FormatException("truncated varint");
        return value;
    }

    /// <summary>
    /// Reads a varint from a stream one byte at a time (varint prefixes are short; callers that
    /// care about throughput buffer the stream). Returns null on a clean end of stream before the
    /// first byte.
    /// </summary>
    public static async ValueTask<ulong?> ReadAsync(Stream stream, CancellationToken cancellationToken)
    {
        var buffer = new byte[1];
        ulong value = 0;
        for (var i = 0; i < MaxLength; i++)
        {
            var n = await stream.ReadAsync(buffer, cancellationToken);
            if (n == 0)
            {
                if (i == 0) return null;
                throw new EndOfStreamException("stream ended inside a varint");
            }
            var b = buffer[0];
            if (i == MaxLength - 1 && b > 1)
                throw new FormatException("varint overflows 64 bits");
            value |= (ulong)(b & 0x7F) << (7 * i);
            if (b < 0x80)
            {
                if (b == 0 && i > 0)
                    throw new FormatException("varint is not minimally encoded");
                return value;
            }
        }
        throw new FormatException("varint overflows 64 bits");
    }
}
