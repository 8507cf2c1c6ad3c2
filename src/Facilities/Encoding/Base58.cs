using System.Numerics;

namespace P2PInference.Facilities.Encoding;

/// <summary>Base58 with the Bitcoin alphabet (multibase <c>z</c>, libp2p PeerId text).</summary>
public static class Base58
{
    private const string Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    private static readonly sbyte[] Map = BuildMap();

    /// <summary>Inputs past this are refused before any work: no PeerId or CID is this long.</summary>
    public const int MaxEncodedLength = 512;

    private static sbyte[] BuildMap()
    {
        var map = new sbyte[128];
        Array.Fill(map, (sbyte)-1);
        for (var i = 0; i < Alphabet.Length; i++) map[Alphabet[i]] = (sbyte)i;
        return map;
    }

    /// <remarks>
    /// Long division on base-58 digits kept in a span: a PeerId's text is asked for on every dial (the
    /// host keys dials by it), and a BigInteger division per character allocated an array each time.
    /// </remarks>
    public static string Encode(ReadOnlySpan<byte> data)
    {
        var zeros = 0;
        while (zeros < data.Length && data[zeros] == 0) zeros++;
        // log(256) / log(58) < 1.38 digits per byte.
        var capacity = (data.Length - zeros) * 138 / 100 + 1;
        Span<byte> digits = capacity <= 256 ? stackalloc byte[capacity] : new byte[capacity];
        var length = 0;
        foreach (var b in data[zeros..])
        {
            // digits (least significant first) = digits * 256 + b
            var carry = (int)b;
            for (var i = 0; i < length; i++)
            {
                carry += digits[i] << 8;
                digits[i] = (byte)(carry % 58);
                carry /= 58;
            }
            while (carry > 0)
            {
                digits[length++] = (byte)(carry % 58);
                carry /= 58;
            }
        }
        Span<char> text = zeros + length <= 512 ? stackalloc char[zeros + length] : new char[zeros + length];
        text[..zeros].Fill('1');
        for (var i = 0; i < length; i++) text[zeros + i] = Alphabet[digits[length - 1 - i]];
        return new string(text);
    }

    public static byte[] Decode(ReadOnlySpan<char> text)
    {
        if (text.Length > MaxEncodedLength)
            throw new FormatException($"base58 text longer than {MaxEncodedLength} characters");
        var zeros = 0;
        while (zeros < text.Length && text[zeros] == '1') zeros++;
        BigInteger value = 0;
        foreach (var c in text)
        {
            var digit = c < 128 ? Map[c] : -1;
            if (digit < 0) throw new FormatException($"'{c}' is not a base58 character");
            value = value * 58 + digit;
        }
        var body = value.IsZero ? [] : value.ToByteArray(isUnsigned: true, isBigEndian: true);
        var result = new byte[zeros + body.Length];
        body.CopyTo(result, zeros);
        return result;
    }
}
