using System.Buffers.Text;

namespace P2PInference.Workers.Auth;

/// <summary>Constants and encoding shared by <see cref="JwtIssuer"/> and <see cref="JwtValidator"/>.</summary>
public static class Jwt
{
    /// <summary>The JWS algorithm for Ed25519 signatures (RFC 8037).</summary>
    public const string Algorithm = "EdDSA";

    public const string Type = "JWT";

    /// <summary>Tokens longer than this are refused before any parsing; ours are about 400 characters.</summary>
    public const int MaxTokenLength = 8 * 1024;

    /// <summary>The <c>kid</c> of tokens signed by <paramref name="key"/>: its libp2p PeerId, which is how workers name each other.</summary>
    public static string KeyId(Facilities.Identity.PublicKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return key.ToPeerId().ToString();
    }

    internal static string Encode(ReadOnlySpan<byte> data) => Base64Url.EncodeToString(data);

    /// <summary>
    /// Strict base64url: only the URL alphabet, no padding, no whitespace, and the canonical
    /// encoding (unused trailing bits zero), so one token has exactly one spelling.
    /// </summary>
    internal static bool TryDecode(ReadOnlySpan<char> text, out byte[] data)
    {
        data = [];
        // A length of 1 mod 4 cannot be base64 (the decoder throws rather than refuses).
        if (text.IsEmpty || text.Length % 4 == 1)
        {
            return false;
        }

        foreach (var c in text)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            {
                return false;
            }
        }

        var buffer = new byte[Base64Url.GetMaxDecodedLength(text.Length)];
        int written;
        try
        {
            if (!Base64Url.TryDecodeFromChars(text, buffer, out written))
            {
                return false;
            }
        }
        catch (FormatException)
        {
            return false;
        }

        data = buffer.AsSpan(0, written).ToArray();
        var reencoded = Base64Url.EncodeToString(data);
        return text.SequenceEqual(reencoded);
    }
}
