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
        var buffer = ArrayPool<byte>.Shared.Rent(1);
        try
        {
            var varint = default(VarintAccumulator);
            while (true)
            {
                if (await stream.ReadAsync(buffer.AsMemory(0, 1), cancellationToken) == 0)
                {
                    if (varint.Count == 0) return null;
                    throw new EndOfStreamException("stream ended inside a varint");
                }
                if (varint.Add(buffer[0], out var error))
                    return error is null ? varint.Value : throw new FormatException(error);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

/// <summary>
/// A varint taken a byte at a time, for readers that must not consume a byte past it; the rules
/// (64 bits at most, minimal encoding) are <see cref="Varint.TryRead"/>'s.
/// </summary>
internal struct VarintAccumulator
{
    /// <summary>Bytes taken so far.</summary>
    public int Count { get; private set; }

    public ulong Value { get; private set; }

    /// <summary>
    /// Takes the next byte; true once the varint has ended, then with <paramref name="error"/> null when
    /// it is valid, else why it is not (a <see cref="FormatException"/> message).
    /// </summary>
    public bool Add(byte b, out string? error)
    {
        error = null;
        if (Count == Varint.MaxLength - 1 && b > 1)
        {
            error = "varint overflows 64 bits";
            return true;
        }
        Value |= (ulong)(b & 0x7F) << (7 * Count);
        Count++;
        // The tenth byte is at most 1 (above), so a varint always ends within Varint.MaxLength bytes.
        if (b >= 0x80) return false;
        if (b == 0 && Count > 1) error = "varint is not minimally encoded";
        return true;
    }
}
