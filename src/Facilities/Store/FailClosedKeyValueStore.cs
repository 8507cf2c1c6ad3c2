using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace P2PInference.Facilities.Store;

/// <summary>
/// An on-disk <see cref="FasterKeyValueStore"/> that fails closed. The store applies a write in
/// memory before its group commit reaches the disk; when that commit fails (a full or failing
/// disk), memory is ahead of the disk with writes whose callers are told they failed. This wrapper
/// then abandons that store at once — no checkpoint, as in a crash — so nothing is served from the
/// memory that is ahead, and every call fails with <see cref="StoreException"/> until a reopen
/// from disk succeeds. Recovery replays the log only up to its last completed commit, so the failed
/// writes are gone from memory and disk alike: a revoke answered "error" is not in force, and stays
/// not in force after a restart. A reopen is tried at the first call at least
/// <c>retryInterval</c> after the failure or the previous attempt, so the store works again once
/// space frees, without reopening on every call while the disk stays full.
/// </summary>
/// <remarks>
/// Reads that ran in the instant between the in-memory apply and the failed commit can have seen
/// such a write (as reads can see a write just before a crash); no read after the failure was
/// detected does.
/// </remarks>
public sealed class FailClosedKeyValueStore : IKeyValueStore, IAsyncDisposable
{
    public static readonly TimeSpan DefaultRetryInterval = TimeSpan.FromSeconds(5);

    private readonly FasterStoreOptions _options;
    private readonly TimeSpan _retryInterval;
    private readonly SemaphoreSlim _reopen = new(1, 1);
    private FasterKeyValueStore? _store;
    private long _lastAttempt;
    private Exception? _failure;
    private bool _disposed;

    private FailClosedKeyValueStore(FasterStoreOptions options, TimeSpan retryInterval, FasterKeyValueStore store)
    {
        _options = options;
        _retryInterval = retryInterval;
        _store = store;
    }

    /// <summary>True while the store is abandoned after a failed write and not yet reopened.</summary>
    public bool IsFailed => Volatile.Read(ref _store) is null && !_disposed;

    /// <exception cref="StoreException">The directory is unusable or damaged.</exception>
    public static async Task<FailClosedKeyValueStore> OpenAsync(FasterStoreOptions options, TimeSpan? retryInterval = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.DataDirectory is null) throw new ArgumentException("fail-closed reopening needs a data directory", nameof(options));
        var interval = retryInterval ?? DefaultRetryInterval;
        ArgumentOutOfRangeException.ThrowIfLessThan(interval, TimeSpan.Zero);
        return new FailClosedKeyValueStore(options, interval, await FasterKeyValueStore.OpenAsync(options, cancellationToken));
    }

    public async ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken)
    {
        var store = await CurrentAsync(cancellationToken);
        return await store.GetAsync(key, cancellationToken);
    }

    public async ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        var store = await CurrentAsync(cancellationToken);
        try
        {
            await store.PutAsync(key, value, cancellationToken);
        }
        catch (StoreException e) when (store.CommitFailed)
        {
            await AbandonAsync(store, e);
            throw;
        }
    }

    public async ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken)
    {
        var store = await CurrentAsync(cancellationToken);
        try
        {
            return await store.DeleteAsync(key, cancellationToken);
        }
        catch (StoreException e) when (store.CommitFailed)
        {
            await AbandonAsync(store, e);
            throw;
        }
    }

    public async ValueTask<bool> CompareAndSwapAsync(string key, ReadOnlyMemory<byte>? expected, ReadOnlyMemory<byte>? replacement, CancellationToken cancellationToken)
    {
        var store = await CurrentAsync(cancellationToken);
        try
        {
            return await store.CompareAndSwapAsync(key, expected, replacement, cancellationToken);
        }
        catch (StoreException e) when (store.CommitFailed)
        {
            await AbandonAsync(store, e);
            throw;
        }
    }

    public async IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var store = await CurrentAsync(cancellationToken);
        await foreach (var pair in store.ScanAsync(prefix, cancellationToken)) yield return pair;
    }

    public IKeyValueStore SubStore(string name) => new PrefixedKeyValueStore(this, name);

    public async ValueTask DisposeAsync()
    {
        await _reopen.WaitAsync();
        try
        {
            _disposed = true;
            if (Interlocked.Exchange(ref _store, null) is { } store) await store.DisposeAsync();
        }
        finally
        {
            _reopen.Release();
        }
    }

    private async ValueTask<FasterKeyValueStore> CurrentAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _store) is { } open) return open;
        await _reopen.WaitAsync(cancellationToken);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_store is { } reopened) return reopened;
            var time = _options.TimeProvider;
            if (time.GetElapsedTime(_lastAttempt) < _retryInterval)
                throw new StoreException("The store is unavailable: a write could not be made durable, and it is not reopened yet: " + _failure?.Message,
                    _options.DataDirectory, _failure);
            _lastAttempt = time.GetTimestamp();
            try
            {
                var store = await FasterKeyValueStore.OpenAsync(_options, cancellationToken);
                _options.Logger?.LogInformation("The store at {Path} was reopened from disk after a failed write", _options.DataDirectory);
                Volatile.Write(ref _store, store);
                return store;
            }
            catch (StoreException e)
            {
                _failure = e;
                throw;
            }
        }
        finally
        {
            _reopen.Release();
        }
    }

    private async Task AbandonAsync(FasterKeyValueStore store, StoreException failure)
    {
        await _reopen.WaitAsync();
        try
        {
            if (!ReferenceEquals(_store, store)) return;
            _options.Logger?.LogError(failure, "A write to the store at {Path} could not be made durable; the store refuses calls until it is reopened from disk",
                _options.DataDirectory);
            Volatile.Write(ref _store, null);
            _failure = failure;
            _lastAttempt = _options.TimeProvider.GetTimestamp();
        }
        finally
        {
            _reopen.Release();
        }

        // As a crash: no final checkpoint of the memory that is ahead of the disk.
        await store.SimulateCrashAsync();
    }
}
