using System.Runtime.CompilerServices;

namespace P2PInference.Facilities.Store;

/// <summary>
/// A sub-store: a view of another store confined to the keys under <c>name + "/"</c>. Any
/// <see cref="IKeyValueStore"/> implementation can return one from <see cref="IKeyValueStore.SubStore"/>.
/// </summary>
public sealed class PrefixedKeyValueStore : IKeyValueStore
{
    private readonly IKeyValueStore _inner;

    public PrefixedKeyValueStore(IKeyValueStore inner, string name)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ValidateName(name);
        _inner = inner;
        Prefix = name + "/";
    }

    /// <summary>The prefix this view adds to every key, relative to the store it was made from.</summary>
    public string Prefix { get; }

    /// <summary>Sub-store names are single path segments so that nesting stays unambiguous.</summary>
    public static void ValidateName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length == 0 || name.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException("A sub-store name is a non-empty string without '/'.", nameof(name));
        }
    }

    public ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken) =>
        _inner.GetAsync(Full(key), cancellationToken);

    public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken) =>
        _inner.PutAsync(Full(key), value, cancellationToken);

    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken) =>
        _inner.DeleteAsync(Full(key), cancellationToken);

    public ValueTask<bool> CompareAndSwapAsync(string key, ReadOnlyMemory<byte>? expected, ReadOnlyMemory<byte>? replacement, CancellationToken cancellationToken) =>
        _inner.CompareAndSwapAsync(Full(key), expected, replacement, cancellationToken);

    public async IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var entry in _inner.ScanAsync(Full(prefix), cancellationToken))
        {
            yield return new KeyValuePair<string, byte[]>(entry.Key[Prefix.Length..], entry.Value);
        }
    }

    public IKeyValueStore SubStore(string name) => new PrefixedKeyValueStore(this, name);

    private string Full(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return string.Concat(Prefix, key);
    }
}
