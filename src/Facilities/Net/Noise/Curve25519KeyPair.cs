using System.Security.Cryptography;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>An X25519 key pair for Noise (static or ephemeral), and the DH function of Noise's "25519".</summary>
internal sealed class Curve25519KeyPair : IDisposable
{
    public const int KeySize = LibSodium.ScalarMultBytes;

    private readonly byte[] _private;

    private Curve25519KeyPair(byte[] privateKey)
    {
        _private = privateKey;
        PublicKey = new byte[KeySize];
        LibSodium.ScalarMultBase(_private, PublicKey);
    }

    public byte[] PublicKey { get; }

    /// <summary>A fresh key from the OS CSPRNG.</summary>
    public static Curve25519KeyPair Generate() => Generate(SystemRandomSource.Instance);

    /// <summary>A fresh key from <paramref name="source"/>: the system source, or a seeded one inside a simulation.</summary>
    public static Curve25519KeyPair Generate(IRandomSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var key = new byte[KeySize];
        source.Fill(key);
        return new Curve25519KeyPair(key);
    }

    /// <summary>A key from fixed bytes: test vectors and replayable tests.</summary>
    public static Curve25519KeyPair FromPrivateKey(ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != KeySize)
            throw new ArgumentException($"an X25519 private key is {KeySize} bytes", nameof(privateKey));
        return new Curve25519KeyPair(privateKey.ToArray());
    }

    /// <summary>DH(this, remote) into <paramref name="shared"/>.</summary>
    /// <exception cref="NoiseException">The remote key is a low-order point (the result would be all zeros).</exception>
    public void Agree(byte[] remotePublic, Span<byte> shared)
    {
        if (remotePublic.Length != KeySize)
            throw new NoiseException($"remote X25519 key is {remotePublic.Length} bytes, not {KeySize}");
        // libsodium refuses an all-zero result, which a small-order remote key forces; such a key
        // contributes nothing secret, so the handshake is refused rather than continued.
        if (!LibSodium.ScalarMult(_private, remotePublic, shared[..KeySize]))
        {
            CryptographicOperations.ZeroMemory(shared[..KeySize]);
            throw new NoiseException("remote X25519 key is a low-order point");
        }
    }

    public void Dispose() => CryptographicOperations.ZeroMemory(_private);
}
