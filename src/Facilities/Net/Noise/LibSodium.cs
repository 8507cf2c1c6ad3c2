using System.Runtime.InteropServices;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// libsodium's X25519, the native library NSec.Cryptography ships. NSec's own X25519 API places
/// every key and every shared secret in guarded memory (mmap + mprotect + mlock per object), which
/// made it slower than BouncyCastle at one ephemeral key and three agreements per handshake; the raw
/// function is the same code without that cost.
/// </summary>
internal static class LibSodium
{
    public const int ScalarMultBytes = 32;

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
}
