using System.Runtime.CompilerServices;
using P2PInference.Facilities.Store;
using P2PInference.TestKit.Simulation;

namespace P2PInference.TestKit.Store;

/// <summary>
/// The key-value store of a simulated node: the <see cref="IKeyValueStore"/> contract kept in
/// memory, on the simulation's thread, so a cluster with storage replays from its seed exactly
/// (a real engine does its I/O on threads and real time of its own, outside the executor's order).
/// </summary>
/// <remarks>
/// <para>
/// Every operation yields once before it takes effect, as a real store's I/O would: the executor
/// decides what runs in between, and schedule exploration can reorder concurrent writers.
/// </para>
/// <para>
/// A write is durable once it returns, so <see cref="CrashAndRestartAsync"/> keeps every
/// acknowledged write, as the real store's recovery does; a wipe is a new store.
/// <see cref="FailWrites"/> makes writes fail as a full disk would, without changing anything.
/// </para>
/// </remarks>
public sealed class SimulatedStore : IKeyValueStore, IAsyncDisposable
{
    private readonly SortedDictionary<string, byte[]> _entries = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private bool _disposed;

    /// <summary>How many times the store was restarted (crash or graceful).</summary>
    public int Restarts { get; private set; }

    /// <summary>When set, every write fails with a <see cref="StoreException"/> and changes nothing (a full disk); reads still work.</summary>
    public bool FailWrites { get; set; }

    /// <summary>The number of keys stored.</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _entries.Count;
        }
    }

    public async ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        await IoAsync(cancellationToken);
        lock (_gate) return _entries.TryGetValue(key, out var value) ? [.. value] : null;
    }

    public async ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var copy = value.ToArray();
        await WriteIoAsync(cancellationToken);
        lock (_gate) _entries[key] = copy;
    }

    public async ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        await WriteIoAsync(cancellationToken);
        lock (_gate) return _entries.Remove(key);
    }

    public async ValueTask<bool> CompareAndSwapAsync(string key, ReadOnlyMemory<byte>? expected, ReadOnlyMemory<byte>? replacement, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var copy = replacement?.ToArray();
        await WriteIoAsync(cancellationToken);
        lock (_gate)
        {
            var present = _entries.TryGetValue(key, out var current);
            var matches = expected is { } e ? present && e.Span.SequenceEqual(current) : !present;
            if (!matches) return false;
            if (copy is null) _entries.Remove(key);
            else _entries[key] = copy;
            return true;
        }
    }

    public async IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        await IoAsync(cancellationToken);
        string[] keys;
        lock (_gate) keys = _entries.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToArray();
        foreach (var key in keys)
        {
            cancellationToken.ThrowIfCancellationRequested();
            byte[]? value;
            lock (_gate) value = _entries.TryGetValue(key, out var v) ? [.. v] : null;
            // Deleted since the scan began: as the contract allows, it is not returned.
            if (value is not null) yield return new KeyValuePair<string, byte[]>(key, value);
        }
    }

    public IKeyValueStore SubStore(string name) => new PrefixedKeyValueStore(this, name);

    /// <summary>The process died and came back: every acknowledged write is still there.</summary>
    public Task CrashAndRestartAsync(CancellationToken cancellationToken = default) => RestartAsync(cancellationToken);

    /// <summary>A graceful stop and start.</summary>
    public async Task RestartAsync(CancellationToken cancellationToken = default)
    {
        await IoAsync(cancellationToken);
        Restarts++;
    }

    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            _disposed = true;
            _entries.Clear();
        }
        return ValueTask.CompletedTask;
    }

    private async ValueTask WriteIoAsync(CancellationToken cancellationToken)
    {
        await IoAsync(cancellationToken);
        if (FailWrites) throw new StoreException("the simulated disk is full: the write was not applied");
    }

    private async ValueTask IoAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
        // Outside a simulation there is no schedule to give a say to.
        if (SimulationExecutor.Current is not null) await Task.Yield();
        ObjectDisposedException.ThrowIf(_disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
    }
}
