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

    public static string Encode(ReadOnlySpan<byte> data)
    {
        var zeros = 0;
        while (zeros < data.Length && data[zeros] == 0) zeros++;
        var value = new BigInteger(data, isUnsigned: true, isBigEndian: true);
        var chars = new List<char>(data.Length * 138 / 100 + 1);
        while (value > 0)
        {
            value = BigInteger.DivRem(value, 58, out var rem);
            chars.Add(Alphabet[(int)rem]);
        }
        for (var i = 0; i < zeros; i++) chars.Add('1');
        chars.Reverse();
        return new string(chars.ToArray());
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
