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

    public static byte[] Decode(ReadOnlySpan<char> text)
    {
        if (text.Length > Base58.MaxEncodedLength)
            throw new FormatException($"base32 text longer than {Base58.MaxEncodedLength} characters");
        var result = new byte[text.Length * 5 / 8];
        int bits = 0, buffer = 0, o = 0;
        foreach (var raw in text)
        {
            var c = char.ToLowerInvariant(raw);
            var v = Alphabet.IndexOf(c);
            if (v < 0) throw new FormatException($"'{raw}' is not a base32 character");
            buffer = (buffer << 5) | v;
            bits += 5;
            if (bits >= 8)
            {
                result[o++] = (byte)(buffer >> (bits - 8));
                bits -= 8;
            }
        }
        return result;
    }
}
