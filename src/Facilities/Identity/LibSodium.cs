using System.Runtime.InteropServices;

namespace P2PInference.Facilities.Identity;

/// <summary>
/// libsodium's X25519 and Ed25519 signing, from the native library NSec.Cryptography ships. NSec's
/// own API places every key and every shared secret in guarded memory (mmap + mprotect + mlock per
/// object): that made its X25519 slower than BouncyCastle at one ephemeral key and three agreements
/// per handshake, and a resident key per identity ran out of mappings at ~20,000 identities. These
/// are the same functions without that cost; the callers keep the key bytes and zero them.
/// </summary>
internal static class LibSodium
{
    public const int ScalarMultBytes = 32;
    public const int SignSeedBytes = 32;
    public const int SignPublicKeyBytes = 32;
    public const int SignSecretKeyBytes = 64;
    public const int SignatureBytes = 64;

    // The name NSec itself binds to, so both resolve to the one library in the package's runtimes/ folder.
    private const string Library = "libsodium";

    static LibSodium()
    {
        // Picks the fastest implementation for this CPU; safe to repeat, and NSec calls it too.
        if (sodium_init() < 0) throw new InvalidOperationException("libsodium failed to initialise");
    }

    /// <summary>X25519(k, 9): the public key of <paramref name="scalar"/>.</summary>
    public static void ScalarMultBase(ReadOnlySpan<byte> scalar, Span<byte> point)
    {
        Check(scalar, point);
        if (crypto_scalarmult_curve25519_base(ref MemoryMarshal.GetReference(point), in MemoryMarshal.GetReference(scalar)) != 0)
            throw new InvalidOperationException("X25519 base multiplication failed");
    }

    /// <summary>X25519(k, u); false when the result is all zeros (a low-order <paramref name="point"/>).</summary>
    public static bool ScalarMult(ReadOnlySpan<byte> scalar, ReadOnlySpan<byte> point, Span<byte> shared)
    {
        Check(scalar, shared);
        if (point.Length != ScalarMultBytes) throw new ArgumentException($"an X25519 point is {ScalarMultBytes} bytes", nameof(point));
        return crypto_scalarmult_curve25519(ref MemoryMarshal.GetReference(shared), in MemoryMarshal.GetReference(scalar), in MemoryMarshal.GetReference(point)) == 0;
    }

    /// <summary>The Ed25519 key pair of an RFC 8032 seed; the secret key is seed ‖ public key.</summary>
    public static void SignSeedKeyPair(ReadOnlySpan<byte> seed, Span<byte> publicKey, Span<byte> secretKey)
    {
        if (seed.Length != SignSeedBytes) throw new ArgumentException($"an Ed25519 seed is {SignSeedBytes} bytes", nameof(seed));
        if (publicKey.Length != SignPublicKeyBytes) throw new ArgumentException($"an Ed25519 public key is {SignPublicKeyBytes} bytes", nameof(publicKey));
        if (secretKey.Length != SignSecretKeyBytes) throw new ArgumentException($"an Ed25519 secret key is {SignSecretKeyBytes} bytes", nameof(secretKey));
        if (crypto_sign_ed25519_seed_keypair(ref MemoryMarshal.GetReference(publicKey), ref MemoryMarshal.GetReference(secretKey), in MemoryMarshal.GetReference(seed)) != 0)
            throw new InvalidOperationException("Ed25519 key derivation failed");
    }

    /// <summary>A detached Ed25519 signature of <paramref name="message"/> (any length, even empty).</summary>
    public static void SignDetached(ReadOnlySpan<byte> secretKey, ReadOnlySpan<byte> message, Span<byte> signature)
    {
        if (secretKey.Length != SignSecretKeyBytes) throw new ArgumentException($"an Ed25519 secret key is {SignSecretKeyBytes} bytes", nameof(secretKey));
        if (signature.Length != SignatureBytes) throw new ArgumentException($"an Ed25519 signature is {SignatureBytes} bytes", nameof(signature));
        // An empty span's reference may be null; libsodium reads nothing when the length is 0.
        if (crypto_sign_ed25519_detached(ref MemoryMarshal.GetReference(signature), out _, in MemoryMarshal.GetReference(message), (ulong)message.Length,
                in MemoryMarshal.GetReference(secretKey)) != 0)
            throw new InvalidOperationException("Ed25519 signing failed");
    }

    private static void Check(ReadOnlySpan<byte> scalar, Span<byte> output)
    {
        // The native side reads and writes exactly 32 bytes: anything shorter would overrun.
        if (scalar.Length != ScalarMultBytes) throw new ArgumentException($"an X25519 scalar is {ScalarMultBytes} bytes", nameof(scalar));
        if (output.Length != ScalarMultBytes) throw new ArgumentException($"an X25519 output is {ScalarMultBytes} bytes", nameof(output));
    }

    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
    private static extern int sodium_init();

    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
    private static extern int crypto_scalarmult_curve25519_base(ref byte q, in byte n);

    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
    private static extern int crypto_scalarmult_curve25519(ref byte q, in byte n, in byte p);

    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
    private static extern int crypto_sign_ed25519_seed_keypair(ref byte pk, ref byte sk, in byte seed);

    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
    private static extern int crypto_sign_ed25519_detached(ref byte sig, out ulong siglen, in byte m, ulong mlen, in byte sk);
}
