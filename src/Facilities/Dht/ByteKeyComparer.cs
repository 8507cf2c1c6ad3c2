namespace P2PInference.Facilities.Dht;

/// <summary>Compares byte arrays by content, so DHT keys can index dictionaries.</summary>
internal sealed class ByteKeyComparer : IEqualityComparer<byte[]>
{
    public static ByteKeyComparer Instance { get; } = new();

    public bool Equals(byte[]? x, byte[]? y) => x is null ? y is null : y is not null && x.AsSpan().SequenceEqual(y);

    public int GetHashCode(byte[] obj)
    {
        var hash = new HashCode();
        hash.AddBytes(obj);
        return hash.ToHashCode();
    }
}
