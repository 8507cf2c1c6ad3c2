namespace P2PInference.Facilities.Store;

/// <summary>
/// A durable key-value store: string keys, byte values. The seam that TestKit's RAM store twins and
/// that <c>KeyValueStoreConformanceTests</c> holds every implementation to.
/// </summary>
/// <remarks>
/// Writes (<see cref="PutAsync"/>, <see cref="DeleteAsync"/>, a successful
/// <see cref="CompareAndSwapAsync"/>) complete only once the change is durable: it survives a kill
/// of the process. Each operation is atomic per key. A cancelled write may or may not have taken
/// effect, but is never half-applied.
/// </remarks>
public interface IKeyValueStore
{
    /// <summary>The value under <paramref name="key"/> (a copy the caller owns), or null when absent.</summary>
    ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken);

    /// <summary>Sets the value; returns once it is durable.</summary>
    ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken);

    /// <summary>Removes the key; true when it existed. Returns once the removal is durable.</summary>
    ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken);

    /// <summary>
    /// Atomically replaces the value when the current one equals <paramref name="expected"/>
    /// (null: the key must be absent). A null <paramref name="replacement"/> deletes the key.
    /// True when the swap happened, and then it is durable. Beware: a null <c>byte[]</c> converts
    /// implicitly to an empty, non-null <see cref="ReadOnlyMemory{T}"/> (so does the <c>null</c> in
    /// <c>b is null ? null : b</c>); for "absent" pass <c>default(ReadOnlyMemory&lt;byte&gt;?)</c>.
    /// </summary>
    ValueTask<bool> CompareAndSwapAsync(string key, ReadOnlyMemory<byte>? expected, ReadOnlyMemory<byte>? replacement, CancellationToken cancellationToken);

    /// <summary>
    /// Every entry whose key starts with <paramref name="prefix"/>, in ordinal key order. Not a
    /// point-in-time snapshot: each value is current when it is read, and keys written during the
    /// scan may or may not appear.
    /// </summary>
    IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>
    /// A named sub-store: the keys of this store that start with <c>name + "/"</c>, seen without that
    /// prefix. Sub-stores nest; a scan of a sub-store never leaves it.
    /// </summary>
    IKeyValueStore SubStore(string name);
}
