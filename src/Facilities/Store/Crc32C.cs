using System.Buffers.Binary;
using System.Numerics;

namespace P2PInference.Facilities.Store;

/// <summary>
/// CRC-32C over log entries. FasterLog's own per-entry checksum did not catch a flipped payload
/// byte in the committed region on recovery (tried), so each entry carries this one as well.
/// </summary>
internal static class Crc32C
{
    public const int Length = 4;

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }

        foreach (var b in data)
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return ~crc;
    }

    /// <summary>Writes the checksum of <c>buffer[..length]</c> right after it; returns the new length.</summary>
    public static int Append(Span<byte> buffer, int length)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[length..], Compute(buffer[..length]));
        return length + Length;
    }

    /// <summary>The payload without its trailing checksum, or false when the checksum does not match.</summary>
    public static bool TryStrip(ReadOnlySpan<byte> entry, out ReadOnlySpan<byte> payload)
    {
        payload = default;
        if (entry.Length < Length)
        {
            return false;
        }

        var body = entry[..^Length];
        if (BinaryPrimitives.ReadUInt32LittleEndian(entry[^Length..]) != Compute(body))
        {
            return false;
        }

        payload = body;
        return true;
    }
}
