namespace P2PInference.Facilities.Trust;

/// <summary>
/// What the cluster key's statements (<see cref="RoleGrant"/>, <see cref="SignedRevocationList"/>) share: the bytes
/// signed are a domain string followed by the statement's body, and the text form is unpadded base64url.
/// </summary>
internal static class ClusterSignedEncoding
{
    /// <summary><paramref name="context"/> followed by <paramref name="body"/>: what the signature covers.</summary>
    public static byte[] SignedBytes(ReadOnlySpan<byte> context, ReadOnlySpan<byte> body)
    {
        var signed = new byte[context.Length + body.Length];
        context.CopyTo(signed);
        body.CopyTo(signed.AsSpan(context.Length));
        return signed;
    }

    /// <summary>True when <paramref name="key"/>'s cluster signed <paramref name="encoded"/>: a body and its Ed25519 signature.</summary>
    public static bool Verify(ClusterId key, ReadOnlySpan<byte> context, ReadOnlySpan<byte> encoded)
    {
        return key.Key.Verify(SignedBytes(context, encoded[..^RoleGrant.SignatureSize]), encoded[^RoleGrant.SignatureSize..]);
    }

    public static string ToBase64Url(ReadOnlySpan<byte> bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <exception cref="FormatException">Not base64url (the message names <paramref name="what"/>).</exception>
    public static byte[] FromBase64Url(string text, string what)
    {
        var base64 = text.Replace('-', '+').Replace('_', '/');
        base64 = base64.PadRight(base64.Length + ((4 - (base64.Length % 4)) % 4), '=');
        try
        {
            return Convert.FromBase64String(base64);
        }
        catch (FormatException e)
        {
            throw new FormatException($"{what} is one line of base64url: {e.Message}", e);
        }
    }
}
