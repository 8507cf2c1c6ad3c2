using Google.Protobuf;
using P2PInference.Facilities.Identity.Proto;

namespace P2PInference.Facilities.Identity;

/// <summary>
/// A peer's public key in the libp2p <c>PublicKey</c> envelope. Only Ed25519 keys can verify
/// signatures here; other types still parse so their PeerIds can be handled.
/// </summary>
public sealed class PublicKey : IEquatable<PublicKey>
{
    /// <summary>No key envelope we accept is longer; checked before parsing.</summary>
    public const int MaxEncodedLength = 1024;

    private readonly byte[] _data;

    // Immutable, like the key: a key kept across connections (Noise's table of verified payloads) then
    // names its peer with one PeerId, whose text and Kademlia id are computed once.
    private PeerId? _peerId;

    public PublicKey(KeyType type, ReadOnlySpan<byte> data)
    {
        if (type == KeyType.Ed25519 && data.Length != Ed25519.PublicKeySize)
            throw new FormatException($"an Ed25519 public key is {Ed25519.PublicKeySize} bytes, not {data.Length}");
        Type = type;
        _data = data.ToArray();
    }

    public KeyType Type { get; }

    /// <summary>The raw key bytes (32 for Ed25519).</summary>
    public ReadOnlySpan<byte> Data => _data;

    public byte[] ToProtobuf() => ToMessage().ToByteArray();

    /// <summary>The envelope as a message that wraps the key bytes rather than copying them; for serializing, never to keep.</summary>
    internal Proto.PublicKey ToMessage() => new() { Type = Type, Data = UnsafeByteOperations.UnsafeWrap(_data) };

    /// <exception cref="FormatException">The bytes are not a well-formed key envelope.</exception>
    public static PublicKey FromProtobuf(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > MaxEncodedLength)
            throw new FormatException($"public key envelope is {bytes.Length} bytes, more than {MaxEncodedLength}");
        Proto.PublicKey message;
        try
        {
            message = Proto.PublicKey.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new FormatException("malformed public key envelope: " + e.Message, e);
        }
        if (!message.HasType || !message.HasData)
            throw new FormatException("public key envelope lacks its type or data");
        return new PublicKey(message.Type, message.Data.Span);
    }

    public bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (Type != KeyType.Ed25519)
            throw new NotSupportedException($"verifying {Type} signatures is not supported");
        if (signature.Length != Ed25519.SignatureSize) return false;
        // Importing copies the 32 bytes without decoding the point; libsodium rejects a bad one when verifying.
        var key = NSec.Cryptography.PublicKey.Import(NSec.Cryptography.SignatureAlgorithm.Ed25519, _data, NSec.Cryptography.KeyBlobFormat.RawPublicKey);
        return NSec.Cryptography.SignatureAlgorithm.Ed25519.Verify(key, data, signature);
    }

    public PeerId ToPeerId() => _peerId ??= PeerId.FromPublicKey(this);

    public bool Equals(PublicKey? other) => other is not null && Type == other.Type && _data.AsSpan().SequenceEqual(other._data);
    public override bool Equals(object? obj) => Equals(obj as PublicKey);
    public override int GetHashCode()
    {
        // Keys of other types arrive from the network with any length, even empty.
        var hash = new HashCode();
        hash.Add(Type);
        hash.AddBytes(_data);
        return hash.ToHashCode();
    }
}
