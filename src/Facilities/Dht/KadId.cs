using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// A point in the Kademlia key space: SHA-256 of a key's bytes (a PeerId's multihash, or a content
/// key), held as four big-endian words so distance and ordering cost no allocation.
/// </summary>
public readonly struct KadId : IEquatable<KadId>
{
    public const int Bits = 256;

    private readonly ulong _a, _b, _c, _d;

    private KadId(ulong a, ulong b, ulong c, ulong d)
    {
        _a = a;
        _b = b;
        _c = c;
        _d = d;
    }

    /// <summary>SHA-256 of <paramref name="key"/>, as the spec's distance definition asks.</summary>
    public static KadId FromKey(ReadOnlySpan<byte> key)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(key, hash);
        return FromHash(hash);
    }

    public static KadId FromPeer(PeerId peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        // The same SHA-256 of the multihash the PeerId keeps for its hash code: computed once per PeerId.
        return FromHash(peer.Sha256);
    }

    /// <summary>Takes 32 bytes as they are (already a hash).</summary>
    public static KadId FromHash(ReadOnlySpan<byte> hash)
    {
        if (hash.Length != 32) throw new ArgumentException("a Kademlia id is 32 bytes", nameof(hash));
        return new KadId(
            BinaryPrimitives.ReadUInt64BigEndian(hash),
            BinaryPrimitives.ReadUInt64BigEndian(hash[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(hash[16..]),
            BinaryPrimitives.ReadUInt64BigEndian(hash[24..]));
    }

    /// <summary>A uniformly random id, for refresh lookups.</summary>
    public static KadId Random(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        Span<byte> bytes = stackalloc byte[32];
        random.NextBytes(bytes);
        return FromHash(bytes);
    }

    /// <summary>A random id sharing exactly <paramref name="prefixLength"/> leading bits with this one.</summary>
    public KadId RandomWithCommonPrefix(int prefixLength, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(prefixLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(prefixLength, Bits);
        var r = Random(random);
        // XOR distance with its highest set bit at position prefixLength (from the top).
        Span<ulong> d = [r._a, r._b, r._c, r._d];
        var word = prefixLength / 64;
        var bit = 63 - prefixLength % 64;
        for (var i = 0; i < word; i++) d[i] = 0;
        d[word] = (d[word] & ((1UL << bit) - 1)) | (1UL << bit);
        return new KadId(_a ^ d[0], _b ^ d[1], _c ^ d[2], _d ^ d[3]);
    }

    /// <summary>The first <paramref name="count"/> bits (1 to 32), as the low bits of a number.</summary>
    internal uint LeadingBits(int count) => (uint)(_a >> (64 - count));

    public KadId Xor(KadId other) => new(_a ^ other._a, _b ^ other._b, _c ^ other._c, _d ^ other._d);

    /// <summary>Leading bits shared with <paramref name="other"/> (256 when equal).</summary>
    public int CommonPrefixLength(KadId other)
    {
        var x = _a ^ other._a;
        if (x != 0) return BitOperations.LeadingZeroCount(x);
        x = _b ^ other._b;
        if (x != 0) return 64 + BitOperations.LeadingZeroCount(x);
        x = _c ^ other._c;
        if (x != 0) return 128 + BitOperations.LeadingZeroCount(x);
        x = _d ^ other._d;
        return x != 0 ? 192 + BitOperations.LeadingZeroCount(x) : Bits;
    }

    /// <summary>Orders <paramref name="x"/> and <paramref name="y"/> by XOR distance to this id.</summary>
    public int CompareDistance(KadId x, KadId y)
    {
        var c = (x._a ^ _a).CompareTo(y._a ^ _a);
        if (c != 0) return c;
        c = (x._b ^ _b).CompareTo(y._b ^ _b);
        if (c != 0) return c;
        c = (x._c ^ _c).CompareTo(y._c ^ _c);
        return c != 0 ? c : (x._d ^ _d).CompareTo(y._d ^ _d);
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, _a);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _b);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], _c);
        BinaryPrimitives.WriteUInt64BigEndian(destination[24..], _d);
    }

    public bool Equals(KadId other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;
    public override bool Equals(object? obj) => obj is KadId other && Equals(other);
    public override int GetHashCode() => HashCode.Combine(_a, _b, _c, _d);
    public static bool operator ==(KadId left, KadId right) => left.Equals(right);
    public static bool operator !=(KadId left, KadId right) => !left.Equals(right);

    public override string ToString() => $"{_a:x16}{_b:x16}{_c:x16}{_d:x16}";
}
