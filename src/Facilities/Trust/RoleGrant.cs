using System.Buffers.Binary;
using System.Text;
using P2PInference.Facilities.Identity;
using KeyType = P2PInference.Facilities.Identity.Proto.KeyType;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// The cluster key's statement "<see cref="Peer"/> may act as <see cref="Role"/> in cluster
/// <see cref="Cluster"/> from <see cref="NotBefore"/> until <see cref="Expiry"/>", numbered by
/// <see cref="Serial"/> so it can be revoked alone. A grant is public: it proves nothing about who
/// presents it, so a verifier always checks it against the peer the Noise handshake authenticated.
/// </summary>
/// <remarks>
/// <para>Encoding (version 1), which is exactly what travels and what is stored; the signature covers
/// <see cref="SignatureContext"/> followed by every byte before the signature, so the bytes signed
/// are canonical by construction (one field order, fixed widths, no optional parts):</para>
/// <code>
/// version      1 byte   = 1
/// cluster key  32 bytes   Ed25519 public key of the cluster
/// role         1 byte     GrantRole
/// peer length  1 byte     1..128
/// peer         n bytes    the PeerId's multihash
/// not before   8 bytes    unix seconds, big-endian, signed
/// expiry       8 bytes    unix seconds, big-endian, signed, after not-before
/// serial       8 bytes    big-endian
/// signature    64 bytes   Ed25519 by the cluster key
/// </code>
/// <para>Anything else — another version, an unknown role, a length that does not add up, trailing
/// bytes — fails <see cref="Decode"/>; a grant that decodes is not yet trusted (see <see cref="GrantVerifier"/>).</para>
/// </remarks>
public sealed class RoleGrant
{
    public const byte Version = 1;
    public const int SignatureSize = 64;

    /// <summary>The largest encoded grant: a PeerId of <see cref="PeerId.MaxLength"/> bytes.</summary>
    public const int MaxEncodedLength = FixedLength + PeerId.MaxLength;

    /// <summary>Domain separation: a signature over a grant never verifies as anything else the key signs.</summary>
    internal static ReadOnlySpan<byte> SignatureContext => "p2pinference/role-grant/v1\0"u8;

    private const int KeyLength = 32;
    private const int FixedLength = 1 + KeyLength + 1 + 1 + 8 + 8 + 8 + SignatureSize;

    private readonly byte[] _encoded;
    private int _signature; // 0 not checked yet, 1 valid, 2 invalid: the bytes never change, so neither does the answer

    private RoleGrant(byte[] encoded, ClusterId cluster, GrantRole role, PeerId peer, DateTimeOffset notBefore, DateTimeOffset expiry, ulong serial)
    {
        _encoded = encoded;
        Cluster = cluster;
        Role = role;
        Peer = peer;
        NotBefore = notBefore;
        Expiry = expiry;
        Serial = serial;
    }

    public ClusterId Cluster { get; }
    public GrantRole Role { get; }
    public PeerId Peer { get; }
    public DateTimeOffset NotBefore { get; }
    public DateTimeOffset Expiry { get; }
    public ulong Serial { get; }

    /// <summary>The serial as operators write it in a revocation list: 16 hex digits.</summary>
    public string SerialText => Serial.ToString("x16", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The encoded grant, signature included (a copy).</summary>
    public byte[] ToBytes() => (byte[])_encoded.Clone();

    internal ReadOnlySpan<byte> Encoded => _encoded;

    /// <summary>The grant as one line of text (base64url, no padding): the grant file's content and the RPC metadata value.</summary>
    public string ToText() => ClusterSignedEncoding.ToBase64Url(_encoded);

    /// <summary>Signs a new grant with <paramref name="clusterKey"/>.</summary>
    internal static RoleGrant Sign(KeyPair clusterKey, GrantRole role, PeerId peer, DateTimeOffset notBefore, DateTimeOffset expiry, ulong serial)
    {
        ArgumentNullException.ThrowIfNull(clusterKey);
        ArgumentNullException.ThrowIfNull(peer);
        if (!GrantRoles.IsDefined((byte)role)) throw new ArgumentOutOfRangeException(nameof(role), role, "not a grant role");
        var nb = notBefore.ToUnixTimeSeconds();
        var exp = expiry.ToUnixTimeSeconds();
        if (exp <= nb) throw new ArgumentException("a grant expires after it becomes valid", nameof(expiry));
        var peerBytes = peer.Bytes;
        var encoded = new byte[FixedLength + peerBytes.Length];
        var body = encoded.AsSpan(0, encoded.Length - SignatureSize);
        var at = 0;
        body[at++] = Version;
        clusterKey.PublicKey.Data.CopyTo(body[at..]);
        at += KeyLength;
        body[at++] = (byte)role;
        body[at++] = (byte)peerBytes.Length;
        peerBytes.CopyTo(body[at..]);
        at += peerBytes.Length;
        BinaryPrimitives.WriteInt64BigEndian(body[at..], nb);
        BinaryPrimitives.WriteInt64BigEndian(body[(at + 8)..], exp);
        BinaryPrimitives.WriteUInt64BigEndian(body[(at + 16)..], serial);
        var signature = clusterKey.Sign(ClusterSignedEncoding.SignedBytes(SignatureContext, body));
        signature.CopyTo(encoded, encoded.Length - SignatureSize);
        return Decode(encoded);
    }

    /// <summary>Parses a grant from untrusted bytes. The signature is not checked here.</summary>
    /// <exception cref="FormatException">The bytes are not a version-1 grant.</exception>
    public static RoleGrant Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < FixedLength + 1) throw new FormatException($"a grant is at least {FixedLength + 1} bytes; this is {bytes.Length}");
        if (bytes.Length > MaxEncodedLength) throw new FormatException($"a grant is at most {MaxEncodedLength} bytes; this is {bytes.Length}");
        if (bytes[0] != Version) throw new FormatException($"grant version {bytes[0]} is not supported (this node reads version {Version})");
        var key = new PublicKey(KeyType.Ed25519, bytes.Slice(1, KeyLength));
        var roleByte = bytes[1 + KeyLength];
        if (!GrantRoles.IsDefined(roleByte)) throw new FormatException($"grant names unknown role {roleByte}");
        var peerLength = bytes[2 + KeyLength];
        if (peerLength == 0 || bytes.Length != FixedLength + peerLength)
            throw new FormatException($"grant length {bytes.Length} does not match its peer id length {peerLength}");
        var at = 3 + KeyLength;
        var peer = PeerId.FromBytes(bytes.Slice(at, peerLength));
        at += peerLength;
        var nb = BinaryPrimitives.ReadInt64BigEndian(bytes[at..]);
        var exp = BinaryPrimitives.ReadInt64BigEndian(bytes[(at + 8)..]);
        var serial = BinaryPrimitives.ReadUInt64BigEndian(bytes[(at + 16)..]);
        const long minSeconds = -62135596800, maxSeconds = 253402300799; // what DateTimeOffset can hold
        if (nb is < minSeconds or > maxSeconds || exp is < minSeconds or > maxSeconds) throw new FormatException("grant times are out of range");
        if (exp <= nb) throw new FormatException("grant expires before it becomes valid");
        return new RoleGrant(bytes.ToArray(), new ClusterId(key), (GrantRole)roleByte, peer,
            DateTimeOffset.FromUnixTimeSeconds(nb), DateTimeOffset.FromUnixTimeSeconds(exp), serial);
    }

    /// <summary>The most a file holding one grant in <see cref="ToText"/>'s form may sensibly hold, white space included.</summary>
    public const int MaxFileBytes = 4096;

    /// <summary>Parses <see cref="ToText"/>'s form (surrounding white space allowed).</summary>
    /// <exception cref="FormatException">Not a grant.</exception>
    public static RoleGrant FromText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = text.Trim();
        if (text.Length > (MaxEncodedLength * 4 / 3) + 4) throw new FormatException($"a grant is at most {MaxEncodedLength} bytes");
        return Decode(ClusterSignedEncoding.FromBase64Url(text, "a grant"));
    }

    /// <summary>True when the cluster key named in the grant signed it.</summary>
    public bool HasValidSignature()
    {
        var known = Volatile.Read(ref _signature);
        if (known != 0) return known == 1;
        var valid = ClusterSignedEncoding.Verify(Cluster, SignatureContext, _encoded);
        Volatile.Write(ref _signature, valid ? 1 : 2);
        return valid;
    }

    public override string ToString() =>
        new StringBuilder().Append(Role.Name()).Append(" grant for ").Append(Peer).Append(" in cluster ").Append(Cluster)
            .Append(", serial ").Append(SerialText).Append(", valid ").Append(NotBefore.ToString("u", System.Globalization.CultureInfo.InvariantCulture))
            .Append(" to ").Append(Expiry.ToString("u", System.Globalization.CultureInfo.InvariantCulture)).ToString();
}
