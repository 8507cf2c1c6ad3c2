using System.Buffers.Binary;
using P2PInference.Facilities.Identity;
using KeyType = P2PInference.Facilities.Identity.Proto.KeyType;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// The cluster key's statement "as of <see cref="Issued"/>, these grants are revoked": a
/// <see cref="RevocationList"/> that can travel between peers, since anyone can check who signed it. A
/// newer one replaces an older one whole, so a lift is as deliberate as a revocation: the operator signs a
/// list without the entry. Peers hand it on (<see cref="RevocationExchange"/>) but cannot forge or alter
/// one; the worst a peer can do is not hand it on.
/// </summary>
/// <remarks>
/// <para>Encoding (version 1); the signature covers <see cref="SignatureContext"/> followed by every byte
/// before it, so there is exactly one encoding to sign:</para>
/// <code>
/// version      1 byte   = 1
/// cluster key  32 bytes   Ed25519 public key of the cluster
/// issued       8 bytes    unix milliseconds, big-endian, signed: orders lists, a newer replaces an older
/// serials      4 bytes    count n, big-endian; then n serials of 8 bytes each, big-endian
/// peers        4 bytes    count m, big-endian; then m PeerIds, each a length byte (1..128) and the multihash
/// signature    64 bytes   Ed25519 by the cluster key
/// </code>
/// <para>At most <see cref="MaxEncodedLength"/> bytes. Counts are checked against the bytes left before
/// anything is allocated; another version, a length that does not add up, a duplicate entry or trailing
/// bytes fail <see cref="Decode"/>. A list that decodes is not yet trusted: see <see cref="IsSignedBy"/>.</para>
/// </remarks>
public sealed class SignedRevocationList
{
    public const byte Version = 1;

    /// <summary>The largest list peers exchange or a file may hold: about 60,000 serials.</summary>
    public const int MaxEncodedLength = 512 * 1024;

    /// <summary>Domain separation: a signature over a revocation list never verifies as a grant, nor the other way.</summary>
    internal static ReadOnlySpan<byte> SignatureContext => "p2pinference/revocation-list/v1\0"u8;

    private const int KeyLength = 32;
    private const int SignatureSize = RoleGrant.SignatureSize;
    private const int FixedLength = 1 + KeyLength + 8 + 4 + 4 + SignatureSize;

    private readonly byte[] _encoded;
    private int _signature; // 0 not checked yet, 1 valid, 2 invalid

    private SignedRevocationList(byte[] encoded, ClusterId cluster, DateTimeOffset issued, RevocationList list)
    {
        _encoded = encoded;
        Cluster = cluster;
        Issued = issued;
        List = list;
    }

    public ClusterId Cluster { get; }

    /// <summary>When the operator signed it; a list issued later replaces this one.</summary>
    public DateTimeOffset Issued { get; }

    public RevocationList List { get; }

    /// <summary>The encoded list, signature included, as peers exchange it.</summary>
    public ReadOnlyMemory<byte> Bytes => _encoded;

    /// <summary>Signs <paramref name="list"/> as of <paramref name="issued"/> with <paramref name="clusterKey"/>.</summary>
    /// <exception cref="ArgumentException">The list is too long to encode within <see cref="MaxEncodedLength"/>.</exception>
    internal static SignedRevocationList Sign(KeyPair clusterKey, RevocationList list, DateTimeOffset issued)
    {
        ArgumentNullException.ThrowIfNull(clusterKey);
        ArgumentNullException.ThrowIfNull(list);
        var serials = list.Serials.Order().ToArray();
        var peers = list.Peers.OrderBy(p => p.ToString(), StringComparer.Ordinal).Select(p => p.Bytes.ToArray()).ToArray();
        var length = FixedLength + (8 * serials.Length) + peers.Sum(p => 1 + p.Length);
        if (length > MaxEncodedLength)
            throw new ArgumentException($"{list.Count} revocations encode to {length} bytes; a signed list holds at most {MaxEncodedLength}", nameof(list));
        var encoded = new byte[length];
        var body = encoded.AsSpan(0, length - SignatureSize);
        var at = 0;
        body[at++] = Version;
        clusterKey.PublicKey.Data.CopyTo(body[at..]);
        at += KeyLength;
        BinaryPrimitives.WriteInt64BigEndian(body[at..], issued.ToUnixTimeMilliseconds());
        at += 8;
        BinaryPrimitives.WriteUInt32BigEndian(body[at..], (uint)serials.Length);
        at += 4;
        foreach (var serial in serials)
        {
            BinaryPrimitives.WriteUInt64BigEndian(body[at..], serial);
            at += 8;
        }
        BinaryPrimitives.WriteUInt32BigEndian(body[at..], (uint)peers.Length);
        at += 4;
        foreach (var peer in peers)
        {
            body[at++] = (byte)peer.Length;
            peer.CopyTo(body[at..]);
            at += peer.Length;
        }
        clusterKey.Sign(ClusterSignedEncoding.SignedBytes(SignatureContext, body)).CopyTo(encoded, length - SignatureSize);
        return Decode(encoded);
    }

    /// <summary>Parses a list from untrusted bytes. The signature is not checked here.</summary>
    /// <exception cref="FormatException">The bytes are not a version-1 signed revocation list.</exception>
    public static SignedRevocationList Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < FixedLength) throw new FormatException($"a signed revocation list is at least {FixedLength} bytes; this is {bytes.Length}");
        if (bytes.Length > MaxEncodedLength) throw new FormatException($"a signed revocation list is at most {MaxEncodedLength} bytes; this is {bytes.Length}");
        if (bytes[0] != Version) throw new FormatException($"revocation list version {bytes[0]} is not supported (this node reads version {Version})");
        var key = new PublicKey(KeyType.Ed25519, bytes.Slice(1, KeyLength));
        var body = bytes[..^SignatureSize];
        var at = 1 + KeyLength;
        var issuedMs = BinaryPrimitives.ReadInt64BigEndian(body[at..]);
        at += 8;
        const long minMs = -62135596800000, maxMs = 253402300799999; // what DateTimeOffset can hold
        if (issuedMs is < minMs or > maxMs) throw new FormatException("the revocation list's issue time is out of range");

        var serialCount = BinaryPrimitives.ReadUInt32BigEndian(body[at..]);
        at += 4;
        // Bound by what is left before allocating: a count cannot ask for more than the bytes hold.
        if (serialCount > (ulong)(body.Length - at - 4) / 8) throw new FormatException($"the revocation list declares {serialCount} serials, more than its bytes hold");
        var serials = new HashSet<ulong>((int)serialCount);
        for (var i = 0; i < serialCount; i++, at += 8)
            if (!serials.Add(BinaryPrimitives.ReadUInt64BigEndian(body[at..]))) throw new FormatException("the revocation list names a serial twice");

        var peerCount = BinaryPrimitives.ReadUInt32BigEndian(body[at..]);
        at += 4;
        if (peerCount > (ulong)(body.Length - at) / 2) throw new FormatException($"the revocation list declares {peerCount} peers, more than its bytes hold");
        var peers = new HashSet<PeerId>((int)peerCount);
        for (var i = 0; i < peerCount; i++)
        {
            if (at >= body.Length) throw new FormatException("the revocation list ends inside its peers");
            var length = body[at++];
            if (length == 0 || length > PeerId.MaxLength || length > body.Length - at)
                throw new FormatException($"the revocation list's peer {i} has length {length}, which its bytes do not hold");
            if (!peers.Add(PeerId.FromBytes(body.Slice(at, length)))) throw new FormatException("the revocation list names a peer twice");
            at += length;
        }
        if (at != body.Length) throw new FormatException($"the revocation list has {body.Length - at} bytes after its peers");
        return new SignedRevocationList(bytes.ToArray(), new ClusterId(key), DateTimeOffset.FromUnixTimeMilliseconds(issuedMs),
            new RevocationList(serials, peers));
    }

    /// <summary>True when <paramref name="cluster"/>'s key signed this list.</summary>
    public bool IsSignedBy(ClusterId cluster)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        if (Cluster != cluster) return false;
        var known = Volatile.Read(ref _signature);
        if (known != 0) return known == 1;
        var valid = ClusterSignedEncoding.Verify(Cluster, SignatureContext, _encoded);
        Volatile.Write(ref _signature, valid ? 1 : 2);
        return valid;
    }

    /// <summary>Where a signed list's text begins: it tells it apart from a plain list, whose lines are serials and PeerIds.</summary>
    public const string TextPrefix = "p2pinference-revocations-v1:";

    /// <summary>The list as the file holds it: <see cref="TextPrefix"/> and base64url, one line.</summary>
    public string ToText() => TextPrefix + ClusterSignedEncoding.ToBase64Url(_encoded);

    /// <summary>Whether <paramref name="text"/> is meant as a signed list (rather than a plain one).</summary>
    public static bool IsSignedText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.AsSpan().TrimStart().StartsWith(TextPrefix, StringComparison.Ordinal);
    }

    /// <summary>Parses <see cref="ToText"/>'s form (surrounding white space allowed). The signature is not checked here.</summary>
    /// <exception cref="FormatException">Not a signed revocation list.</exception>
    public static SignedRevocationList FromText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = text.Trim();
        if (!text.StartsWith(TextPrefix, StringComparison.Ordinal)) throw new FormatException($"a signed revocation list starts with '{TextPrefix}'");
        var payload = text[TextPrefix.Length..];
        if (payload.Length > (MaxEncodedLength * 4 / 3) + 4) throw new FormatException($"a signed revocation list is at most {MaxEncodedLength} bytes");
        return Decode(ClusterSignedEncoding.FromBase64Url(payload, "a signed revocation list after its prefix"));
    }

    public override string ToString() =>
        $"revocation list of cluster {Cluster} issued {Issued.ToString("u", System.Globalization.CultureInfo.InvariantCulture)}, {List.Count} {(List.Count == 1 ? "entry" : "entries")}";
}
