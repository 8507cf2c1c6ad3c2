using System.Security.Cryptography;
using Google.Protobuf;
using P2PInference.Facilities.Identity.Proto;

namespace P2PInference.Facilities.Identity;

/// <summary>A node's Ed25519 identity: signs with the private key, is known by its PeerId.</summary>
public sealed class KeyPair
{
    // seed ‖ public key, as libsodium signs with it; in managed memory, as before NSec (see LibSodium).
    private readonly byte[] _secretKey = new byte[LibSodium.SignSecretKeyBytes];

    private KeyPair(ReadOnlySpan<byte> seed)
    {
        Span<byte> publicKey = stackalloc byte[Ed25519.PublicKeySize];
        LibSodium.SignSeedKeyPair(seed, publicKey, _secretKey);
        PublicKey = new PublicKey(KeyType.Ed25519, publicKey);
        PeerId = PeerId.FromPublicKey(PublicKey);
    }

    public PublicKey PublicKey { get; }
    public PeerId PeerId { get; }

    /// <summary>A new key from the operating system's CSPRNG.</summary>
    public static KeyPair Generate() => Generate(SystemRandomSource.Instance);

    /// <summary>
    /// A new key from <paramref name="source"/>: the system source for real nodes; a seeded one only
    /// inside a simulation, where the key must replay from the simulation's seed.
    /// </summary>
    public static KeyPair Generate(IRandomSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Span<byte> seed = stackalloc byte[Ed25519.SeedSize];
        source.Fill(seed);
        try
        {
            return FromSeed(seed);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(seed);
        }
    }

    /// <summary>A deterministic key, for tests and simulations that must replay from a seed.</summary>
    public static KeyPair FromSeed(ReadOnlySpan<byte> seed)
    {
        if (seed.Length != Ed25519.SeedSize)
            throw new ArgumentException($"an Ed25519 seed is {Ed25519.SeedSize} bytes", nameof(seed));
        return new KeyPair(seed);
    }

    /// <summary>A deterministic key derived from a seeded <see cref="Random"/>.</summary>
    public static KeyPair FromRandom(Random random)
    {
        Span<byte> seed = stackalloc byte[Ed25519.SeedSize];
        random.NextBytes(seed);
        return FromSeed(seed);
    }

    public byte[] Sign(ReadOnlySpan<byte> data)
    {
        var signature = new byte[Ed25519.SignatureSize];
        LibSodium.SignDetached(_secretKey, data, signature);
        return signature;
    }

    /// <summary>The libp2p <c>PrivateKey</c> envelope; Ed25519 data is seed ‖ public key, as go- and js-libp2p write it.</summary>
    public byte[] ExportPrivateKey()
    {
        // libsodium's secret key is already the seed ‖ public key layout libp2p writes.
        var data = _secretKey.ToArray();
        var envelope = new PrivateKey { Type = KeyType.Ed25519, Data = ByteString.CopyFrom(data) }.ToByteArray();
        CryptographicOperations.ZeroMemory(data);
        return envelope;
    }

    /// <exception cref="FormatException">Not an Ed25519 private key envelope.</exception>
    public static KeyPair ImportPrivateKey(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > PublicKey.MaxEncodedLength)
            throw new FormatException("private key envelope is too long");
        PrivateKey message;
        try
        {
            message = PrivateKey.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new FormatException("malformed private key envelope: " + e.Message, e);
        }
        if (!message.HasType || !message.HasData)
            throw new FormatException("private key envelope lacks its type or data");
        if (message.Type != KeyType.Ed25519)
            throw new FormatException($"only Ed25519 private keys are supported, not {message.Type}");
        var data = message.Data.Span;
        // 64 = seed ‖ public key (current); 96 = seed ‖ public ‖ public (older libp2p, per the spec).
        if (data.Length != 32 && data.Length != 64 && data.Length != 96)
            throw new FormatException($"an Ed25519 private key is 32, 64 or 96 bytes, not {data.Length}");
        if (data.Length == 96 && !data[32..64].SequenceEqual(data[64..]))
            throw new FormatException("the legacy private key's two public key copies differ");
        var pair = FromSeed(data[..32]);
        if (data.Length >= 64 && !data[32..64].SequenceEqual(pair.PublicKey.Data))
            throw new FormatException("the private key's embedded public key does not match its seed");
        return pair;
    }
}
