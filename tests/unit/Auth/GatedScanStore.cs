using System.Runtime.CompilerServices;
using P2PInference.Facilities.Store;
using P2PInference.Facilities.Threading;

namespace P2PInference.Tests.Unit.Auth;

/// <summary>
/// An in-memory store whose operations all complete at once, except scans, which wait for
/// <see cref="ReleaseScans"/> (on the scanning caller's token): a caller's code runs straight up
/// to a scan, so a test knows exactly who is waiting on it.
/// </summary>
internal sealed class GatedScanStore : IKeyValueStore
{
    private readonly SortedDictionary<string, byte[]> _entries = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void ReleaseScans() => _release.TrySetResult();

    public ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken) =>
        new(_entries.TryGetValue(key, out var value) ? [.. value] : null);

    public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        _entries[key] = value.ToArray();
        return ValueTask.CompletedTask;
    }

    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken) => new(_entries.Remove(key));

    public ValueTask<bool> CompareAndSwapAsync(string key, ReadOnlyMemory<byte>? expected, ReadOnlyMemory<byte>? replacement, CancellationToken cancellationToken)
    {
        var present = _entries.TryGetValue(key, out var current);
        if (expected is { } e ? !present || !e.Span.SequenceEqual(current) : present) return new(false);
        if (replacement is { } r) _entries[key] = r.ToArray();
        else _entries.Remove(key);
        return new(true);
    }

    public async IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await _release.Task.WaitOrCancelAsync(cancellationToken);
        foreach (var entry in _entries.Where(e => e.Key.StartsWith(prefix, StringComparison.Ordinal)).ToList()) yield return entry;
    }

    public IKeyValueStore SubStore(string name) => new PrefixedKeyValueStore(this, name);
}
