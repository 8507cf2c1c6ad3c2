namespace P2PInference.Facilities.Encoding;

/// <summary>RFC 4648 base32, lower case, no padding (multibase <c>b</c>, used by CIDv1 text).</summary>
public static class Base32
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";

    public static string Encode(ReadOnlySpan<byte> data)
    {
        var chars = new char[(data.Length * 8 + 4) / 5];
        int bits = 0, buffer = 0, o = 0;
        foreach (var b in data)
        {
            buffer = (buffer << 8) | b;
            bits += 8;
            while (bits >= 5)
            {
                chars[o++] = Alphabet[(buffer >> (bits - 5)) & 31];
                bits -= 5;
            }
        }
        if (bits > 0) chars[o++] = Alphabet[(buffer << (5 - bits)) & 31];
        return new string(chars, 0, o);
    }

    /// <summary>Inputs past this are refused before any work: no PeerId or CID is this long.</summary>
    public const int MaxEncodedLength = 512;

    /// <exception cref="FormatException">A character outside the alphabet, or a length or trailing bits no encoder produces.</exception>
    public static byte[] Decode(ReadOnlySpan<char> text)
    {
        if (text.Length > MaxEncodedLength)
            throw new FormatException($"base32 text longer than {MaxEncodedLength} characters");
        var result = new byte[text.Length * 5 / 8];
        int bits = 0, buffer = 0, o = 0;
        foreach (var raw in text)
        {
            var c = char.ToLowerInvariant(raw);
            var v = Alphabet.IndexOf(c);
            if (v < 0) throw new FormatException($"'{raw}' is not a base32 character");
            // Only the low 13 bits can still be needed; masking keeps the shift from overflowing.
            buffer = ((buffer << 5) | v) & 0x1FFF;
            bits += 5;
            if (bits >= 8)
            {
                result[o++] = (byte)(buffer >> (bits - 8));
                bits -= 8;
            }
        }
        // Unpadded lengths of 1, 3 or 6 (mod 8) leave 5+ spare bits, and canonical text has its
        // spare bits zero: accepting either would let two texts name the same bytes.
        if (bits >= 5)
            throw new FormatException($"base32 text of {text.Length} characters has an impossible length");
        if ((buffer & ((1 << bits) - 1)) != 0)
            throw new FormatException("base32 text has non-zero trailing bits");
        return result;
    }
}
