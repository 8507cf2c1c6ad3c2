using System.Buffers;
using System.Text;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Facilities.Store;

/// <summary>
/// One store operation in the write-ahead log: <c>op(1) | varint keyLength | key UTF-8 | value | crc32c(4)</c>.
/// FasterLog frames each entry; this is its payload.
/// </summary>
internal static class WalRecord
{
    public const byte Put = 1;
    public const byte Delete = 2;

    /// <summary>Strict: a key that cannot round-trip through UTF-8 (a lone surrogate) is refused, not mangled.</summary>
    public static readonly UTF8Encoding KeyEncoding = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static int MaxLength(int keyBytes, int valueBytes) => 1 + Varint.MaxLength + keyBytes + valueBytes + Crc32C.Length;

    /// <summary>Encodes into a rented buffer; the caller returns it to <see cref="ArrayPool{T}.Shared"/>.</summary>
    public static byte[] Encode(byte op, string key, int keyBytes, ReadOnlySpan<byte> value, out int length)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxLength(keyBytes, value.Length));
        buffer[0] = op;
        var at = 1 + Varint.Write(buffer.AsSpan(1), (ulong)keyBytes);
        at += KeyEncoding.GetBytes(key, buffer.AsSpan(at));
        value.CopyTo(buffer.AsSpan(at));
        length = Crc32C.Append(buffer, at + value.Length);
        return buffer;
    }

    /// <summary>Decodes an entry; false when it is malformed (the log is then corrupt).</summary>
    public static bool TryDecode(ReadOnlySpan<byte> entry, int maxKeyBytes, out byte op, out string key, out ReadOnlySpan<byte> value)
    {
        op = 0;
        key = string.Empty;
        value = default;
        if (!Crc32C.TryStrip(entry, out entry) || entry.Length < 2 || (entry[0] != Put && entry[0] != Delete))
        {
            return false;
        }

        op = entry[0];
        if (!Varint.TryRead(entry[1..], out var keyLength, out var consumed) || keyLength > (ulong)maxKeyBytes || keyLength > (ulong)(entry.Length - 1 - consumed))
        {
            return false;
        }

        var keyStart = 1 + consumed;
        try
        {
            key = KeyEncoding.GetString(entry.Slice(keyStart, (int)keyLength));
        }
        catch (DecoderFallbackException)
        {
            return false;
        }

        value = entry[(keyStart + (int)keyLength)..];
        return op == Put || value.IsEmpty;
    }
}
