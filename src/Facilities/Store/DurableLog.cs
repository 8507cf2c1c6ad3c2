using System.Buffers;
using System.Runtime.CompilerServices;
using FASTER.core;

namespace P2PInference.Facilities.Store;

/// <summary>
/// An append-only, durable log on a FASTER <see cref="FasterLog"/>, for workers that keep a journal.
/// </summary>
/// <remarks>
/// <see cref="AppendAsync"/> returns once the entry is durable; concurrent appenders share one
/// commit (group commit). On open, FasterLog recovers up to its last completed commit: an entry
/// whose commit never finished (a torn tail) is dropped whole. Each entry carries a CRC-32C and a
/// scan must reach the commit point, so damage inside the durable region (a flipped byte, a file
/// cut short) surfaces as a <see cref="StoreException"/> at scan.
/// </remarks>
public sealed class DurableLog : IAsyncDisposable
{
    internal const string Kind = "P2PInference.DurableLog/1";

    private readonly StoreDirectory _directory;
    private readonly IDevice _device;
    private readonly FasterLog _log;
    private readonly GroupCommitter _committer;
    private readonly int _maxEntryBytes;
    private readonly ReaderWriterLockSlim _gate = new(LockRecursionPolicy.NoRecursion);
    private volatile int _state; // 0 open, 1 disposed, 2 crashed

    private DurableLog(StoreDirectory directory, string logDirectory, IDevice device, FasterLog log, int maxEntryBytes)
    {
        _directory = directory;
        _device = device;
        _log = log;
        _maxEntryBytes = maxEntryBytes;
        // FASTER would delete the previous commit record even when writing the new one fails.
        _committer = new GroupCommitter(log, () => FasterLogFiles.PruneCommits(logDirectory));
    }

    public string Directory => _directory.Path;

    /// <summary>The durable end of the log (for tests that damage what lies beyond it).</summary>
    internal long CommittedAddress => _log.CommittedUntilAddress;

    /// <exception cref="StoreException">The directory is unusable, in use, or its log is corrupted.</exception>
    public static Task<DurableLog> OpenAsync(DurableLogOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxEntryBytes, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.MaxEntryBytes, 256 << 20);
        cancellationToken.ThrowIfCancellationRequested();
        var directory = StoreDirectory.Open(options.Directory, options.CreateIfMissing, Kind);
        IDevice? device = null;
        try
        {
            var logDir = directory.Part("log", "log directory");
            var log = FasterLogFiles.Open(logDir, options.MaxEntryBytes + Crc32C.Length, "log", d => device = d);
            return Task.FromResult(new DurableLog(directory, logDir, device!, log, options.MaxEntryBytes));
        }
        catch
        {
            device?.Dispose();
            directory.Dispose();
            throw;
        }
    }

    /// <summary>Appends an entry; returns its position once it is durable.</summary>
    public async ValueTask<long> AppendAsync(ReadOnlyMemory<byte> entry, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (entry.Length > _maxEntryBytes)
        {
            throw new ArgumentException($"The entry is {entry.Length} bytes; the limit is {_maxEntryBytes}.", nameof(entry));
        }

        long address;
        var buffer = ArrayPool<byte>.Shared.Rent(entry.Length + Crc32C.Length);
        _gate.EnterReadLock();
        try
        {
            ThrowIfNotOpen();
            entry.Span.CopyTo(buffer);
            var length = Crc32C.Append(buffer, entry.Length);
            address = _log.Enqueue(buffer.AsSpan(0, length));
        }
        catch (FasterException e)
        {
            throw new StoreException("The log failed to append: " + e.Message, Directory, e);
        }
        finally
        {
            _gate.ExitReadLock();
            ArrayPool<byte>.Shared.Return(buffer);
        }

        await _committer.WaitForCommitAsync(address).WaitAsync(cancellationToken);
        return address;
    }

    /// <summary>Every durable entry, from the beginning to the durable end as of the call, in append order.</summary>
    /// <exception cref="StoreException">An entry inside the durable region is damaged.</exception>
    public async IAsyncEnumerable<DurableLogEntry> ScanAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ThrowIfNotOpen();
        var until = _log.CommittedUntilAddress;
        var begin = _log.BeginAddress;
        using var iterator = _log.Scan(begin, until);
        var count = 0;
        var end = begin;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            byte[] entry;
            int length;
            long address;
            try
            {
                if (!iterator.GetNext(out entry, out length, out address))
                {
                    // A file cut inside the committed region reads as zeros, which the scan skips.
                    if (end != until)
                    {
                        throw new StoreException($"The log ends at {end} but was committed up to {until}: it was truncated or damaged.", Directory);
                    }

                    yield break;
                }

                end = iterator.NextAddress;
            }
            catch (FasterException e)
            {
                throw new StoreException("The log is corrupted: " + e.Message, Directory, e);
            }

            if (!Crc32C.TryStrip(entry.AsSpan(0, length), out var payload))
            {
                throw new StoreException($"The log entry at {address} is damaged (checksum mismatch).", Directory);
            }

            yield return new DurableLogEntry(address, payload.ToArray());
            if (++count % 256 == 0)
            {
                // Long scans give the thread back now and then.
                await Task.Yield();
            }
        }
    }

    /// <summary>Clean shutdown: everything appended is committed, then the files are closed.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            return;
        }

        _gate.EnterWriteLock();
        _gate.ExitWriteLock();
        if (_log.TailAddress > _log.CommittedUntilAddress)
        {
            await _committer.WaitForCommitAsync(_log.TailAddress - 1);
        }

        Release(new ObjectDisposedException(nameof(DurableLog)));
    }

    /// <summary>Like <see cref="FasterKeyValueStore.SimulateCrashAsync"/>: handles closed without a final commit.</summary>
    internal async Task SimulateCrashAsync()
    {
        if (Interlocked.CompareExchange(ref _state, 2, 0) != 0)
        {
            return;
        }

        _gate.EnterWriteLock();
        _gate.ExitWriteLock();
        var crash = new StoreException("The log crashed (simulated).", Directory);
        _committer.Fail(crash);
        await _committer.IdleAsync();
        Release(crash);
    }

    private void Release(Exception reason)
    {
        _committer.Fail(reason);
        _log.Dispose();
        _device.Dispose();
        _directory.Dispose();
    }

    private void ThrowIfNotOpen()
    {
        switch (_state)
        {
            case 1:
                throw new ObjectDisposedException(nameof(DurableLog));
            case 2:
                throw new StoreException("The log crashed (simulated).", Directory);
        }
    }
}
