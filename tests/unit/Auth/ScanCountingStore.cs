using System.Runtime.CompilerServices;
using P2PInference.Facilities.Store;

namespace P2PInference.Tests.Unit.Auth;

/// <summary>Counts prefix scans; everything else goes to the store underneath.</summary>
internal sealed class ScanCountingStore(IKeyValueStore inner) : IKeyValueStore
{
    public int Scans { get; private set; }

    public ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken) => inner.GetAsync(key, cancellationToken);

    public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken) => inner.PutAsync(key, value, cancellationToken);

    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken) => inner.DeleteAsync(key, cancellationToken);

    public ValueTask<bool> CompareAndSwapAsync(string key, ReadOnlyMemory<byte>? expected, ReadOnlyMemory<byte>? replacement, CancellationToken cancellationToken) =>
        inner.CompareAndSwapAsync(key, expected, replacement, cancellationToken);

    public async IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Scans++;
        await foreach (var pair in inner.ScanAsync(prefix, cancellationToken)) yield return pair;
    }

    public IKeyValueStore SubStore(string name) => new PrefixedKeyValueStore(this, name);
}
