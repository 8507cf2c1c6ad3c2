using System.Security.Cryptography;
using Google.Protobuf;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Facilities.Identity;

/// <summary>
/// A libp2p PeerId: the multihash of a peer's protobuf <c>PublicKey</c> — identity multihash when
/// the envelope is at most 42 bytes (Ed25519), sha2-256 otherwise. Text is base58btc
/// (<c>12D3KooW…</c>); CIDv1 text (<c>bafz…</c>, codec libp2p-key) parses too.
/// </summary>
public sealed class PeerId : IEquatable<PeerId>, IComparable<PeerId>
{
    private const byte IdentityCode = 0x00;
    private const byte Sha256Code = 0x12;
    private const int MaxInlineKeyLength = 42;
    private const ulong LibP2pKeyCodec = 0x72;
    /// <summary>Bounds the multihash digest we accept from the network.</summary>
    public const int MaxLength = 128;

    // The multihash of an Ed25519 key inlined: identity code, length 36, then the protobuf envelope's
    // header (type Ed25519, data of 32 bytes). Nearly every PeerId on the network has this form.
    private static ReadOnlySpan<byte> Ed25519Prefix => [IdentityCode, 36, 0x08, 0x01, 0x12, 0x20];

    private readonly byte[] _bytes;
    // SHA-256 of the multihash, computed on first use: the hash code is its first four bytes and the DHT's
    // key-space position is all of it. Most PeerIds parsed from the network are never hashed or placed.
    private byte[]? _sha256;
    // Base58 of a whole multihash is BigInteger division per character; logs and errors ask for it repeatedly.
    private string? _text;

    private PeerId(byte[] multihash)
    {
        _bytes = multihash;
    }

    /// <summary>The multihash bytes.</summary>
    public ReadOnlySpan<byte> Bytes => _bytes;

    /// <summary>The multihash bytes as memory, for wrapping without a copy in a message being sent (they never change).</summary>
    internal ReadOnlyMemory<byte> BytesMemory => _bytes;

    public byte[] ToByteArray() => (byte[])_bytes.Clone();

    public static PeerId FromPublicKey(PublicKey key)
    {
        // Every handshake names the remote's freshly parsed key: the envelope is written straight into
        // the multihash instead of through a copy of the key and an envelope array.
        var envelope = key.ToMessage();
        var length = envelope.CalculateSize();
        byte[] multihash;
        if (length <= MaxInlineKeyLength)
        {
            multihash = new byte[2 + length];
            multihash[0] = IdentityCode;
            multihash[1] = (byte)length;
            envelope.WriteTo(multihash.AsSpan(2));
        }
        else
        {
            multihash = new byte[34];
            multihash[0] = Sha256Code;
            multihash[1] = 32;
            SHA256.HashData(envelope.ToByteArray(), multihash.AsSpan(2));
        }
        return new PeerId(multihash);
    }

    /// <summary>Parses multihash bytes (as carried in multiaddrs and protocol messages).</summary>
    /// <exception cref="FormatException">Not an identity or sha2-256 multihash.</exception>
    public static PeerId FromBytes(ReadOnlySpan<byte> multihash)
    {
        Validate(multihash);
        return new PeerId(multihash.ToArray());
    }

    /// <summary>Checks what <see cref="FromBytes"/> checks, without making a PeerId.</summary>
    /// <exception cref="FormatException">Not an identity or sha2-256 multihash.</exception>
    internal static void Validate(ReadOnlySpan<byte> multihash)
    {
        // An envelope of exactly this form parses as a valid Ed25519 key; anything else takes the full parse.
        if (multihash.Length == Ed25519Prefix.Length + 32 && multihash.StartsWith(Ed25519Prefix)) return;
        if (multihash.Length > MaxLength)
            throw new FormatException($"peer id is {multihash.Length} bytes, more than {MaxLength}");
        var code = Varint.Read(multihash, out var a);
        var length = Varint.Read(multihash[a..], out var b);
        if ((ulong)(multihash.Length - a - b) != length)
            throw new FormatException("peer id multihash length does not match its digest");
        switch (code)
        {
            case IdentityCode:
                PublicKey.FromProtobuf(multihash[(a + b)..]);
                break;
            case Sha256Code when length == 32:
                break;
            default:
                throw new FormatException($"peer id multihash code 0x{code:x} with length {length} is not supported");
        }
    }

    /// <exception cref="FormatException">Neither base58btc multihash nor CIDv1 text.</exception>
    public static PeerId Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) throw new FormatException("empty peer id");
        if (text.StartsWith("Qm", StringComparison.Ordinal) || text.StartsWith('1'))
            return FromBytes(Base58.Decode(text));
        var cid = text[0] switch
        {
            'b' or 'B' => Base32.Decode(text.AsSpan(1)),
            'z' => Base58.Decode(text.AsSpan(1)),
            _ => throw new FormatException($"'{text}' is not a peer id: neither base58btc nor a CIDv1"),
        };
        var version = Varint.Read(cid, out var a);
        if (version != 1) throw new FormatException($"CID version {version} is not 1");
        var codec = Varint.Read(cid.AsSpan(a), out var b);
        if (codec != LibP2pKeyCodec) throw new FormatException($"CID codec 0x{codec:x} is not libp2p-key (0x72)");
        return FromBytes(cid.AsSpan(a + b));
    }

    public static bool TryParse(string? text, out PeerId? peerId)
    {
        peerId = null;
        if (text is null) return false;
        try
        {
            peerId = Parse(text);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    /// <summary>The public key, when it is inlined (identity multihash); null for hashed keys.</summary>
    public PublicKey? TryGetPublicKey()
    {
        if (_bytes[0] != IdentityCode) return null;
        Varint.Read(_bytes.AsSpan(1), out var lengthSize);
        return PublicKey.FromProtobuf(_bytes.AsSpan(1 + lengthSize));
    }

    public bool Matches(PublicKey key) => Equals(FromPublicKey(key));

    public override string ToString() => _text ??= Base58.Encode(_bytes);

    /// <summary>CIDv1, codec libp2p-key, base32 multibase.</summary>
    public string ToCidString()
    {
        var cid = new byte[2 + _bytes.Length];
        cid[0] = 1;
        cid[1] = (byte)LibP2pKeyCodec;
        _bytes.CopyTo(cid, 2);
        return "b" + Base32.Encode(cid);
    }

    /// <summary>SHA-256 of the multihash (the DHT's key-space position of this peer), computed once.</summary>
    internal ReadOnlySpan<byte> Sha256 => _sha256 ??= SHA256.HashData(_bytes);

    public bool Equals(PeerId? other) => other is not null && (ReferenceEquals(this, other) || _bytes.AsSpan().SequenceEqual(other._bytes));
    public override bool Equals(object? obj) => Equals(obj as PeerId);
    // The first bytes of a cryptographic hash: the same in every process (orders replay), and no cheaper
    // for a remote to collide than the hash itself.
    public override int GetHashCode() => BitConverter.ToInt32(Sha256);
    public int CompareTo(PeerId? other) => other is null ? 1 : _bytes.AsSpan().SequenceCompareTo(other._bytes);
    public static bool operator ==(PeerId? a, PeerId? b) => a is null ? b is null : a.Equals(b);
    public static bool operator !=(PeerId? a, PeerId? b) => !(a == b);
}
