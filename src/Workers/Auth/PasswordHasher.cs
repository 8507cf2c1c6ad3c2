using System.Globalization;
using System.Security.Cryptography;
using P2PInference.Facilities.Identity;

namespace P2PInference.Workers.Auth;

/// <summary>
/// PBKDF2-HMAC-SHA256 password hashes, encoded as
/// <c>pbkdf2-sha256$&lt;iterations&gt;$&lt;salt, base64&gt;$&lt;hash, base64&gt;</c>. The iteration count
/// travels with each hash, so raising it later leaves old hashes verifiable (and
/// <see cref="NeedsRehash"/> says when to upgrade one).
/// </summary>
public sealed class PasswordHasher
{
    public const string Algorithm = "pbkdf2-sha256";
    public const int SaltSize = 16;
    public const int HashSize = 32;

    // A stored hash is our own output; the bound only keeps a damaged record from being parsed at length.
    private const int MaxEncodedLength = 256;

    private readonly IRandomSource _random;

    /// <param name="randomSource">Salts. Null: the system CSPRNG; seeded only in simulations.</param>
    public PasswordHasher(int iterations, IRandomSource? randomSource = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(iterations, AuthOptions.MaxPasswordIterations);
        Iterations = iterations;
        _random = randomSource ?? SystemRandomSource.Instance;
    }

    public int Iterations { get; }

    /// <summary>A fresh hash of <paramref name="password"/> under a random salt.</summary>
    public string Hash(string password)
    {
        ArgumentNullException.ThrowIfNull(password);
        Span<byte> salt = stackalloc byte[SaltSize];
        _random.Fill(salt);
        Span<byte> hash = stackalloc byte[HashSize];
        Derive(password, salt, Iterations, hash);
        return string.Create(CultureInfo.InvariantCulture, $"{Algorithm}${Iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}");
    }

    /// <summary>
    /// True when <paramref name="password"/> matches. False for a wrong password and for an encoded
    /// hash that is not one of ours; the comparison takes the same time wherever the bytes differ.
    /// </summary>
    public static bool Verify(string password, string encoded)
    {
        ArgumentNullException.ThrowIfNull(password);
        if (!TryDecode(encoded, out var iterations, out var salt, out var expected))
        {
            return false;
        }

        Span<byte> actual = stackalloc byte[HashSize];
        Derive(password, salt, iterations, actual);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    /// <summary>True when <paramref name="encoded"/> was made with another iteration count (or is unreadable).</summary>
    public bool NeedsRehash(string encoded) => !TryDecode(encoded, out var iterations, out _, out _) || iterations != Iterations;

    private static void Derive(string password, ReadOnlySpan<byte> salt, int iterations, Span<byte> destination)
    {
        // Policy refuses text that is not valid Unicode, so the strict encoding cannot throw for a
        // registered password; for a login attempt, such text simply hashes to something else.
        var bytes = PasswordPolicy.IsEncodable(password) ? PasswordPolicy.Encode(password) : System.Text.Encoding.UTF8.GetBytes(password);
        try
        {
            Rfc2898DeriveBytes.Pbkdf2(bytes, salt, destination, iterations, HashAlgorithmName.SHA256);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    private static bool TryDecode(string? encoded, out int iterations, out byte[] salt, out byte[] hash)
    {
        iterations = 0;
        salt = [];
        hash = [];
        if (encoded is null || encoded.Length > MaxEncodedLength)
        {
            return false;
        }

        var parts = encoded.Split('$');
        if (parts.Length != 4 || parts[0] != Algorithm
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out iterations)
            || iterations < 1 || iterations > AuthOptions.MaxPasswordIterations)
        {
            return false;
        }

        try
        {
            salt = Convert.FromBase64String(parts[2]);
            hash = Convert.FromBase64String(parts[3]);
        }
        catch (FormatException)
        {
            return false;
        }

        return salt.Length >= 8 && hash.Length == HashSize;
    }
}
