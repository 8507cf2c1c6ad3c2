using System.Buffers.Binary;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Keys for refreshing a routing-table bucket: a FIND_NODE key whose kad id (the key's SHA-256)
/// shares exactly b leading bits with ours. Such a key is found only by trying, about 2^(b+1)
/// hashes: refreshing the deeper empty buckets this way cost the 1,000-peer simulation 5.6 million
/// hashes, and a 10,000-peer network's joins (whose deepest buckets reach 13 to 16) tens of
/// thousands each. As in go-libp2p's refresh, a table names a key for every 16-bit prefix of a kad
/// id, so a key for any bucket a refresh asks for (below <see cref="TableBits"/>) is a lookup.
/// The table ships with the assembly (<c>BucketKeys.table</c>: for each prefix, the smallest counter
/// whose key hashes to it, three bytes big-endian); building it takes about 675,000 hashes, which
/// every node would otherwise pay at start. <see cref="Build"/> makes it again, for the test that
/// guards the file.
/// </summary>
internal static class BucketKeys
{
    /// <summary>Bits of kad-id prefix the table covers: 65,536 keys.</summary>
    internal const int TableBits = 16;

    private const int KeyLength = 32;
    private const int EntryLength = 3;
    private static readonly Lazy<uint[]> s_table = new(Load);

    /// <summary>
    /// A key whose kad id shares exactly <paramref name="bucket"/> leading bits with <paramref name="local"/>;
    /// <paramref name="random"/> picks among the keys that do.
    /// </summary>
    public static byte[] For(KadId local, int bucket, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        ArgumentOutOfRangeException.ThrowIfNegative(bucket);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(bucket, KadId.Bits);
        if (bucket >= TableBits) return ByTrying(local, bucket, random);
        var own = local.LeadingBits(TableBits);
        var keep = ~0u << (TableBits - bucket) & (1u << TableBits) - 1;
        var flip = 1u << (TableBits - 1 - bucket);
        var free = (uint)random.Next(1 << (TableBits - 1 - bucket));
        return KeyFor(s_table.Value[(own & keep) | (~own & flip) | free]);
    }

    /// <summary>The table as the file holds it.</summary>
    internal static uint[] Load()
    {
        using var stream = typeof(BucketKeys).Assembly.GetManifestResourceStream(typeof(BucketKeys).FullName + ".table")
            ?? throw new InvalidOperationException("the bucket key table is not embedded in the assembly");
        var bytes = new byte[(1 << TableBits) * EntryLength];
        stream.ReadExactly(bytes);
        var table = new uint[1 << TableBits];
        for (var i = 0; i < table.Length; i++)
            table[i] = (uint)(bytes[i * EntryLength] << 16 | bytes[i * EntryLength + 1] << 8 | bytes[i * EntryLength + 2]);
        return table;
    }

    /// <summary>Builds the table from scratch: for each prefix, the smallest counter whose key hashes to it.</summary>
    internal static uint[] Build()
    {
        var table = new uint[1 << TableBits];
        var missing = table.Length;
        Span<byte> key = stackalloc byte[KeyLength];
        // Counters start at 1: 0 marks a prefix not found yet.
        for (var counter = 1u; missing > 0; counter++)
        {
            Write(key, counter);
            var prefix = KadId.FromKey(key).LeadingBits(TableBits);
            if (table[prefix] != 0) continue;
            table[prefix] = counter;
            missing--;
        }
        return table;
    }

    /// <summary>The key a table entry names: 28 zero bytes and the counter, big-endian.</summary>
    internal static byte[] KeyFor(uint counter)
    {
        var key = new byte[KeyLength];
        Write(key, counter);
        return key;
    }

    /// <summary>A key for a bucket deeper than the table: random keys until one lands in it.</summary>
    internal static byte[] ByTrying(KadId local, int bucket, Random random)
    {
        var key = new byte[KeyLength];
        do random.NextBytes(key);
        while (local.CommonPrefixLength(KadId.FromKey(key)) != bucket);
        return key;
    }

    private static void Write(Span<byte> key, uint counter)
    {
        key.Clear();
        BinaryPrimitives.WriteUInt32BigEndian(key[^4..], counter);
    }
}
