using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using FASTER.core;
using Microsoft.Extensions.Logging;
using Session = FASTER.core.ClientSession<string, byte[], byte[], byte[], FASTER.core.Empty, FASTER.core.SimpleFunctions<string, byte[], FASTER.core.Empty>>;

namespace P2PInference.Facilities.Store;

/// <summary>
/// The product key-value store, on Microsoft FASTER.
/// </summary>
/// <remarks>
/// <para><b>Design.</b> Two FASTER structures per data directory:</para>
/// <list type="bullet">
/// <item><c>wal/</c> — a <see cref="FasterLog"/> write-ahead log of operations ("put key value",
/// "delete key"), the source of truth for durability. A write is appended to it and acknowledged
/// only once a FasterLog commit covering it has completed (device writes are write-through, and
/// the commit record is written after the data). Commits are grouped: writers that arrive while
/// one commit is on the device share the next (<see cref="GroupCommitter"/>), so 64 concurrent
/// writers cost about one flush, not 64.</item>
/// <item><c>kv/</c> — a <see cref="FasterKV{Key, Value}"/> (string keys, byte[] values, on
/// FASTER's generic allocator with an object log) holding the current state for reads. It is
/// checkpointed (a full snapshot checkpoint) periodically, after a volume of log, and at a clean
/// shutdown. Each checkpoint carries, as its FASTER commit cookie, the log address A such that
/// every operation before A is in the checkpoint; the log is then truncated up to A.</item>
/// </list>
/// <para><b>Ordering.</b> Per key, the log append and the in-memory apply happen together under a
/// striped lock, so the log order of a key's operations equals the order they were applied
/// (compare-and-swap reads, compares, appends and applies atomically). A checkpoint briefly takes
/// the exclusive side of a reader-writer gate that every mutation holds shared, reads the log tail
/// A, waits until the log is durable up to A and only then starts FASTER's checkpoint: everything
/// before A is then in the checkpoint, and A is never beyond the durable log.</para>
/// <para><b>Recovery</b> on open = recover FASTER's latest checkpoint (none on a new store), then
/// replay the log from its cookie address to the last commit. Replaying puts/deletes that the
/// checkpoint already holds is harmless because replay keeps their order. FasterLog recovers only
/// up to its last completed commit, so an entry whose commit never finished — a torn final record
/// — is discarded, never half-applied. Damage inside the committed region (a flipped byte, a file
/// cut short) is a <see cref="StoreException"/> at open: each entry carries a CRC-32C, and replay
/// must reach the commit point exactly.</para>
/// <para><b>Reads</b> see a write as soon as it is applied, which can be just before its commit
/// completes: a crash in that window can lose a value a reader saw, but never one a writer was told
/// was stored. Deletes and failed compare-and-swaps that return without writing first wait until
/// what they observed is durable.</para>
/// <para><b>In memory</b> (<see cref="FasterStoreOptions.DataDirectory"/> null): no log, no
/// checkpoints; the hybrid log must fit in <see cref="FasterStoreOptions.MemorySizeBytes"/>, and
/// a write that would push records out of memory fails with <see cref="StoreException"/>.</para>
/// </remarks>
public sealed class FasterKeyValueStore : IKeyValueStore, IAsyncDisposable
{
    internal const string Kind = "P2PInference.FasterKeyValueStore/1";
    private const int StripeCount = 256;
    private const int CookieLength = 8;

    private readonly FasterStoreOptions _options;
    private readonly StoreDirectory? _directory;
    private readonly List<IDevice> _devices;
    private readonly FasterKV<string, byte[]> _kv;
    private readonly FasterLog? _log;
    private readonly GroupCommitter? _committer;
    private readonly SimpleFunctions<string, byte[], Empty> _functions = new();
    private readonly System.Collections.Concurrent.ConcurrentBag<Session> _sessions = [];
    private readonly Lock[] _stripes;
    private readonly ReaderWriterLockSlim _gate = new(LockRecursionPolicy.NoRecursion);
    private readonly SemaphoreSlim _checkpointLock = new(1, 1);
    private readonly ITimer? _timer;
    private long _lastCheckpointAddress;
    private int _backgroundCheckpoint;
    private volatile int _state; // 0 open, 1 disposed, 2 crashed

    private FasterKeyValueStore(FasterStoreOptions options, StoreDirectory? directory, List<IDevice> devices, FasterKV<string, byte[]> kv, FasterLog? log, string? walDir, long replayedFrom)
    {
        _options = options;
        _directory = directory;
        _devices = devices;
        _kv = kv;
        _log = log;
        _lastCheckpointAddress = replayedFrom;
        _stripes = new Lock[StripeCount];
        for (var i = 0; i < _stripes.Length; i++)
        {
            _stripes[i] = new Lock();
        }

        if (log is not null)
        {
            // FASTER would delete the previous commit record even when writing the new one fails.
            _committer = new GroupCommitter(log, () => FasterLogFiles.PruneCommits(walDir!));
            if (options.CheckpointInterval > TimeSpan.Zero)
            {
                _timer = options.TimeProvider.CreateTimer(_ => StartBackgroundCheckpoint(), null, options.CheckpointInterval, options.CheckpointInterval);
            }
        }
    }

    /// <summary>The data directory, or null in memory.</summary>
    public string? DataDirectory => _directory?.Path;

    /// <summary>The write-ahead log's durable end (for tests that damage what lies beyond it).</summary>
    internal long CommittedLogAddress => _log?.CommittedUntilAddress ?? 0;

    /// <summary>
    /// Opens (recovering) or creates the store.
    /// </summary>
    /// <exception cref="StoreException">The data directory is unusable: a file in its place, not
    /// creatable or writable, in use, or its checkpoint or log is missing or corrupted.</exception>
    public static async Task<FasterKeyValueStore> OpenAsync(FasterStoreOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MemorySizeBytes, 1L << 16);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxValueBytes, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.MaxValueBytes, 256 << 20);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxKeyBytes, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.MaxKeyBytes, 1 << 20);
        cancellationToken.ThrowIfCancellationRequested();

        var devices = new List<IDevice>();
        StoreDirectory? directory = null;
        FasterKV<string, byte[]>? kv = null;
        FasterLog? log = null;
        try
        {
            string? kvDir = null;
            string? checkpointDir = null;
            string? walDir = null;
            if (options.DataDirectory is not null)
            {
                directory = StoreDirectory.Open(options.DataDirectory, options.CreateIfMissing, Kind);
                kvDir = directory.Part("kv", "key-value log directory");
                checkpointDir = directory.Part("kv-checkpoints", "checkpoint directory");
                walDir = directory.Part("wal", "write-ahead log directory");
            }

            kv = CreateKv(options, kvDir, checkpointDir, devices);
            var replayFrom = 0L;
            var hasCheckpoint = checkpointDir is not null && Directory.EnumerateFileSystemEntries(checkpointDir).Any();
            if (hasCheckpoint)
            {
                replayFrom = await RecoverCheckpointAsync(kv, checkpointDir!, cancellationToken);
            }

            if (walDir is not null)
            {
                log = OpenLog(options, walDir, devices);
                replayFrom = Replay(kv, log, replayFrom, hasCheckpoint, options.MaxKeyBytes, walDir, cancellationToken);
            }

            return new FasterKeyValueStore(options, directory, devices, kv, log, walDir, replayFrom);
        }
        catch
        {
            log?.Dispose();
            kv?.Dispose();
            foreach (var device in devices)
            {
                device.Dispose();
            }

            directory?.Dispose();
            throw;
        }
    }

    public ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        KeyLength(key);
        _gate.EnterReadLock();
        try
        {
            ThrowIfNotOpen();
            var value = WithSession(key, static (session, k) => ReadCurrent(session, k));
            return ValueTask.FromResult(value is null ? null : (byte[]?)value.Clone());
        }
        finally
        {
            _gate.ExitReadLock();
        }
    }

    public async ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var keyBytes = KeyLength(key);
        CheckValue(value.Length);
        var address = Mutate(key, keyBytes, value.ToArray(), null, out _);
        await DurableAsync(address, cancellationToken);
    }

    public async ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var keyBytes = KeyLength(key);
        var address = Mutate(key, keyBytes, null, static (current, _) => current is not null, out var deleted);
        await DurableAsync(address, cancellationToken);
        return deleted;
    }

    public async ValueTask<bool> CompareAndSwapAsync(string key, ReadOnlyMemory<byte>? expected, ReadOnlyMemory<byte>? replacement, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var keyBytes = KeyLength(key);
        if (replacement is { } r)
        {
            CheckValue(r.Length);
        }

        var expectedBytes = expected?.ToArray();
        var address = Mutate(
            key,
            keyBytes,
            replacement?.ToArray(),
            (current, _) => expectedBytes is null ? current is null : current is not null && current.AsSpan().SequenceEqual(expectedBytes),
            out var swapped);
        await DurableAsync(address, cancellationToken);
        return swapped;
    }

    public async IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        cancellationToken.ThrowIfCancellationRequested();
        List<string> keys;
        _gate.EnterReadLock();
        try
        {
            ThrowIfNotOpen();
            keys = CollectKeys(prefix);
        }
        finally
        {
            _gate.ExitReadLock();
        }

        keys.Sort(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var value = await GetAsync(key, cancellationToken);
            if (value is not null)
            {
                yield return new KeyValuePair<string, byte[]>(key, value);
            }
        }
    }

    public IKeyValueStore SubStore(string name) => new PrefixedKeyValueStore(this, name);

    /// <summary>
    /// Checkpoints the key-value state now, so the next open replays only the log written after
    /// this. Does nothing in memory or when nothing was written since the last checkpoint.
    /// </summary>
    public async Task CheckpointAsync(CancellationToken cancellationToken = default)
    {
        if (_log is null)
        {
            return;
        }

        await _checkpointLock.WaitAsync(cancellationToken);
        try
        {
            ThrowIfNotOpen();
            await CheckpointLockedAsync();
        }
        finally
        {
            _checkpointLock.Release();
        }
    }

    /// <summary>
    /// True once a commit of the log failed while the store was open (a full or failing disk): every
    /// later write fails, and memory may hold writes whose callers were told they failed.
    /// <see cref="FailClosedKeyValueStore"/> abandons such a store and reopens it from disk.
    /// </summary>
    internal bool CommitFailed => _state == 0 && _committer?.HasFailed == true;

    /// <summary>Clean shutdown: a final checkpoint (so the next open is fast), then release everything.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            return;
        }

        _timer?.Dispose();
        DrainMutations();
        await _checkpointLock.WaitAsync();
        try
        {
            if (_log is not null)
            {
                try
                {
                    await CheckpointLockedAsync();
                }
                catch (Exception e) when (e is StoreException or FasterException or IOException)
                {
                    // The log is still durable; the next open replays it instead.
                    _options.Logger?.LogWarning(e, "Final checkpoint of the store at {Path} failed", DataDirectory);
                }
            }
        }
        finally
        {
            _checkpointLock.Release();
        }

        ReleaseResources(new ObjectDisposedException(nameof(FasterKeyValueStore)));
    }

    /// <summary>
    /// Simulates a kill of the process: no final commit and no checkpoint; the file handles are
    /// closed with whatever the device already holds. Writes whose commit completed (every
    /// acknowledged one) are on the device; an entry appended but not committed stays beyond the
    /// durable end of the log and is discarded on recovery. Waiters that were not acknowledged
    /// fail with <see cref="StoreException"/>. In-process limits: a commit already on the device
    /// is allowed to finish (a real kill may cut it; its writers were not acknowledged either way),
    /// and an in-progress checkpoint finishes before the handles close.
    /// </summary>
    internal async Task SimulateCrashAsync()
    {
        if (Interlocked.CompareExchange(ref _state, 2, 0) != 0)
        {
            return;
        }

        _timer?.Dispose();
        DrainMutations();
        var crash = new StoreException("The store crashed (simulated).", DataDirectory);
        _committer?.Fail(crash);
        if (_committer is not null)
        {
            await _committer.IdleAsync();
        }

        await _checkpointLock.WaitAsync();
        _checkpointLock.Release();
        ReleaseResources(crash);
    }

    private static FasterKV<string, byte[]> CreateKv(FasterStoreOptions options, string? kvDir, string? checkpointDir, List<IDevice> devices)
    {
        IDevice logDevice;
        IDevice objectDevice;
        if (kvDir is null)
        {
            logDevice = new NullDevice();
            objectDevice = new NullDevice();
        }
        else
        {
            logDevice = Devices.CreateLogDevice(Path.Combine(kvDir, "hlog.log"), preallocateFile: false, deleteOnClose: false, recoverDevice: true);
            objectDevice = Devices.CreateLogDevice(Path.Combine(kvDir, "hlog.obj.log"), preallocateFile: false, deleteOnClose: false, recoverDevice: true);
        }

        devices.Add(logDevice);
        devices.Add(objectDevice);
        var memoryBits = MemoryBits(options);
        var logSettings = new LogSettings
        {
            LogDevice = logDevice,
            ObjectLogDevice = objectDevice,
            MemorySizeBits = memoryBits,
            PageSizeBits = PageBits(options),
            SegmentSizeBits = 30,
            MutableFraction = 0.9,
        };
        var checkpointSettings = checkpointDir is null ? null : new CheckpointSettings { CheckpointManager = SynchronousMetadataDevices.Manager(checkpointDir) };
        var buckets = Math.Max(1L << 10, (long)BitOperations.RoundUpToPowerOf2((ulong)Math.Max(1, options.ExpectedKeyCount / 4)));
        var serializers = new SerializerSettings<string, byte[]>
        {
            keySerializer = () => new KeySerializer(),
            valueSerializer = () => new ValueSerializer(options.MaxValueBytes),
        };
        try
        {
            return new FasterKV<string, byte[]>(buckets, logSettings, checkpointSettings, serializers);
        }
        catch (Exception e) when (e is FasterException or IOException or UnauthorizedAccessException)
        {
            throw new StoreException("The key-value log cannot be opened: " + e.Message, kvDir, e);
        }
    }

    private static async Task<long> RecoverCheckpointAsync(FasterKV<string, byte[]> kv, string checkpointDir, CancellationToken cancellationToken)
    {
        FasterCheckpointFiles.DiscardBrokenBesideWhole(checkpointDir);
        ThrowIfMetadataIsTruncated(checkpointDir);
        try
        {
            await kv.RecoverAsync(cancellationToken: cancellationToken);
        }
        catch (OperationCanceledException)
        {
            throw;
        }
        catch (Exception e)
        {
            throw new StoreException("The key-value checkpoint is missing or corrupted: " + e.Message, checkpointDir, e);
        }

        var cookie = kv.RecoveredCommitCookie;
        if (cookie is null || cookie.Length != CookieLength)
        {
            throw new StoreException("The key-value checkpoint has no valid log position.", checkpointDir);
        }

        return BinaryPrimitives.ReadInt64LittleEndian(cookie);
    }

    /// <summary>
    /// FASTER's checkpoint metadata files (<c>info.dat*</c>) start with the length of what follows
    /// (int32, little-endian). A damaged one can claim hundreds of megabytes, which FASTER then spends
    /// tens of seconds trying to read; the length is checked against the file first.
    /// </summary>
    /// <exception cref="StoreException">A metadata file is shorter than its length prefix says.</exception>
    private static void ThrowIfMetadataIsTruncated(string checkpointDir)
    {
        foreach (var file in Directory.EnumerateFiles(checkpointDir, "info.dat*", SearchOption.AllDirectories))
        {
            if (FasterCheckpointFiles.MetadataProblem(file) is { } problem)
                throw new StoreException($"The key-value checkpoint is missing or corrupted: {problem}.", checkpointDir);
        }
    }

    private static FasterLog OpenLog(FasterStoreOptions options, string walDir, List<IDevice> devices) =>
        FasterLogFiles.Open(walDir, WalRecord.MaxLength(options.MaxKeyBytes, options.MaxValueBytes), "write-ahead log", devices.Add);

    private static int MemoryBits(FasterStoreOptions options) =>
        Math.Clamp(63 - BitOperations.LeadingZeroCount((ulong)options.MemorySizeBytes), 16, 40);

    private static int PageBits(FasterStoreOptions options) => Math.Min(20, MemoryBits(options) - 2);

    /// <summary>FasterLog keeps each entry within one page: the smallest page that fits the largest entry (with its header).</summary>
    internal static int LogPageBits(int maxEntryBytes) =>
        Math.Max(16, 64 - BitOperations.LeadingZeroCount((ulong)(maxEntryBytes + 64)));

    private static long Replay(FasterKV<string, byte[]> kv, FasterLog log, long checkpointAddress, bool hasCheckpoint, int maxKeyBytes, string walDir, CancellationToken cancellationToken)
    {
        // A fresh log begins at FASTER's first valid address; a later begin means it was truncated
        // after a checkpoint that is now gone, and the truncated operations are lost.
        const long firstValidAddress = 64;
        if (!hasCheckpoint && log.BeginAddress > firstValidAddress)
        {
            throw new StoreException("The write-ahead log was truncated after a checkpoint, but the checkpoint is missing.", walDir);
        }

        if (hasCheckpoint && (checkpointAddress < log.BeginAddress || checkpointAddress > log.CommittedUntilAddress))
        {
            throw new StoreException(
                $"The write-ahead log (durable from {log.BeginAddress} to {log.CommittedUntilAddress}) does not continue the checkpoint (which needs it from {checkpointAddress}): log files are missing or from another store.",
                walDir);
        }

        var from = hasCheckpoint ? checkpointAddress : log.BeginAddress;
        var until = log.CommittedUntilAddress;
        var functions = new SimpleFunctions<string, byte[], Empty>();
        using var session = kv.For(functions).NewSession(functions);
        long address = from;
        try
        {
            using var iterator = log.Scan(from, until);
            var end = from;
            while (iterator.GetNext(out byte[] entry, out var length, out address))
            {
                end = iterator.NextAddress;
                cancellationToken.ThrowIfCancellationRequested();
                if (!WalRecord.TryDecode(entry.AsSpan(0, length), maxKeyBytes, out var op, out var key, out var value))
                {
                    throw new StoreException($"The write-ahead log holds a malformed entry at address {address}.", walDir);
                }

                if (op == WalRecord.Put)
                {
                    var copy = value.ToArray();
                    session.Upsert(ref key, ref copy);
                }
                else
                {
                    session.Delete(ref key);
                }
            }

            session.CompletePending(wait: true);

            // A log cut inside its committed region reads back as zeros, which FasterLog's scan
            // skips silently: the entries must run right up to the commit point.
            if (end != until)
            {
                throw new StoreException($"The write-ahead log ends at {end} but was committed up to {until}: it was truncated or damaged, and acknowledged writes are missing.", walDir);
            }
        }
        catch (Exception e) when (e is FasterException or IOException or InvalidDataException or ArgumentException or IndexOutOfRangeException or OverflowException)
        {
            throw new StoreException($"The write-ahead log is corrupted near address {address}: {e.Message}", walDir, e);
        }

        return from;
    }

    private long Mutate(string key, int keyBytes, byte[]? newValue, Func<byte[]?, byte[]?, bool>? shouldApply, out bool applied)
    {
        _gate.EnterReadLock();
        try
        {
            ThrowIfNotOpen();
            var session = Rent();
            try
            {
                lock (_stripes[(uint)key.GetHashCode() % StripeCount])
                {
                    // A blind put needs no read.
                    applied = shouldApply is null || shouldApply(ReadCurrent(session, key), newValue);
                    if (!applied)
                    {
                        // Nothing to write, but what was observed may itself not be durable yet.
                        return _log is null ? -1 : _log.TailAddress - 1;
                    }

                    var address = -1L;
                    if (_log is not null)
                    {
                        var op = newValue is null ? WalRecord.Delete : WalRecord.Put;
                        var buffer = WalRecord.Encode(op, key, keyBytes, newValue, out var length);
                        try
                        {
                            address = _log.Enqueue(buffer.AsSpan(0, length));
                        }
                        finally
                        {
                            ArrayPool<byte>.Shared.Return(buffer);
                        }
                    }
                    else if (newValue is not null)
                    {
                        EnsureInMemoryRoom();
                    }

                    if (newValue is null)
                    {
                        session.Delete(ref key);
                    }
                    else
                    {
                        session.Upsert(ref key, ref newValue);
                    }

                    return address;
                }
            }
            finally
            {
                _sessions.Add(session);
            }
        }
        catch (FasterException e)
        {
            throw new StoreException("The store failed to apply a write: " + e.Message, DataDirectory, e);
        }
        finally
        {
            _gate.ExitReadLock();
        }
    }

    private async ValueTask DurableAsync(long address, CancellationToken cancellationToken)
    {
        if (_committer is null || address < 0 || _log!.CommittedUntilAddress > address)
        {
            return;
        }

        await _committer.WaitForCommitAsync(address).WaitAsync(cancellationToken);
        if (_log.TailAddress - Volatile.Read(ref _lastCheckpointAddress) > _options.CheckpointAfterLogBytes)
        {
            StartBackgroundCheckpoint();
        }
    }

    /// <summary>Without a device behind it, a record pushed out of memory would be lost: refuse the write instead.</summary>
    private void EnsureInMemoryRoom()
    {
        var log = _kv.Log;
        var capacity = 1L << MemoryBits(_options);
        var pageSize = 1L << PageBits(_options);
        if (log.TailAddress - log.BeginAddress > capacity - (2 * pageSize))
        {
            throw new StoreException($"The in-memory store is full (MemorySizeBytes {capacity}); give it a data directory or more memory.");
        }
    }

    private T WithSession<T>(string key, Func<Session, string, T> action)
    {
        var session = Rent();
        try
        {
            return action(session, key);
        }
        finally
        {
            _sessions.Add(session);
        }
    }

    private Session Rent() =>
        _sessions.TryTake(out var session) ? session : _kv.For(_functions).NewSession(_functions);

    private static byte[]? ReadCurrent(Session session, string key)
    {
        byte[] output = null!;
        var status = session.Read(ref key, ref output);
        if (status.IsPending)
        {
            session.CompletePendingWithOutputs(out var outputs, wait: true);
            using (outputs)
            {
                status = default;
                while (outputs.Next())
                {
                    status = outputs.Current.Status;
                    output = outputs.Current.Output;
                }
            }
        }

        return status.Found ? output : null;
    }

    private List<string> CollectKeys(string prefix)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using var iterator = _kv.Log.Scan(_kv.Log.BeginAddress, _kv.Log.TailAddress);
        while (iterator.GetNext(out _))
        {
            var key = iterator.GetKey();
            if (key is not null && key.StartsWith(prefix, StringComparison.Ordinal))
            {
                seen.Add(key);
            }
        }

        return [.. seen];
    }

    private async Task CheckpointLockedAsync()
    {
        long until;
        _gate.EnterWriteLock();
        try
        {
            until = _log!.TailAddress;
        }
        finally
        {
            _gate.ExitWriteLock();
        }

        if (until == Volatile.Read(ref _lastCheckpointAddress))
        {
            return;
        }

        await _committer!.WaitForCommitAsync(until - 1);
        var cookie = new byte[CookieLength];
        BinaryPrimitives.WriteInt64LittleEndian(cookie, until);
        _kv.CommitCookie = cookie;
        bool success;
        Guid token;
        try
        {
            (success, token) = await _kv.TakeFullCheckpointAsync(CheckpointType.Snapshot);
        }
        catch (Exception e) when (e is FasterException or IOException)
        {
            throw new StoreException("Checkpoint failed: " + e.Message, DataDirectory, e);
        }

        if (!success)
        {
            throw new StoreException("Checkpoint could not start (another one is in progress).", DataDirectory);
        }

        // FASTER reports a checkpoint whose metadata it could not write as taken (FasterCheckpointFiles):
        // the log is truncated only once the new checkpoint is known whole and the older ones are gone.
        try
        {
            FasterCheckpointFiles.PruneOrDiscard(Path.Combine(DataDirectory!, "kv-checkpoints"), token);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StoreException("The key-value checkpoint could not be checked: " + e.Message, DataDirectory, e);
        }

        Volatile.Write(ref _lastCheckpointAddress, until);
        _log.TruncateUntil(until);
    }

    private void StartBackgroundCheckpoint()
    {
        if (_state != 0 || Interlocked.Exchange(ref _backgroundCheckpoint, 1) != 0)
        {
            return;
        }

        _ = BackgroundCheckpointAsync();
    }

    private async Task BackgroundCheckpointAsync()
    {
        // Off the writer's path at once, as Task.Run did, but on the caller's context if it has one (a simulation's).
        await Task.Yield();
        try
        {
            await CheckpointAsync();
        }
        catch (Exception e) when (e is StoreException or ObjectDisposedException or FasterException or IOException)
        {
            if (_state == 0)
            {
                _options.Logger?.LogWarning(e, "Background checkpoint of the store at {Path} failed", DataDirectory);
            }
        }
        finally
        {
            Volatile.Write(ref _backgroundCheckpoint, 0);
        }
    }

    /// <summary>Waits for mutations inside their critical section; later ones see the state and refuse.</summary>
    private void DrainMutations()
    {
        _gate.EnterWriteLock();
        _gate.ExitWriteLock();
    }

    private void ReleaseResources(Exception reason)
    {
        _committer?.Fail(reason);
        while (_sessions.TryTake(out var session))
        {
            session.Dispose();
        }

        _log?.Dispose();
        _kv.Dispose();
        foreach (var device in _devices)
        {
            device.Dispose();
        }

        _directory?.Dispose();
    }

    private void ThrowIfNotOpen()
    {
        switch (_state)
        {
            case 1:
                throw new ObjectDisposedException(nameof(FasterKeyValueStore));
            case 2:
                throw new StoreException("The store crashed (simulated).", DataDirectory);
        }
    }

    private int KeyLength(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        int length;
        try
        {
            length = WalRecord.KeyEncoding.GetByteCount(key);
        }
        catch (System.Text.EncoderFallbackException e)
        {
            throw new ArgumentException("The key is not valid Unicode (it holds a lone surrogate).", nameof(key), e);
        }

        if (length > _options.MaxKeyBytes)
        {
            throw new ArgumentException($"The key is {length} UTF-8 bytes; the limit is {_options.MaxKeyBytes}.", nameof(key));
        }

        return length;
    }

    private void CheckValue(int length)
    {
        if (length > _options.MaxValueBytes)
        {
            throw new ArgumentException($"The value is {length} bytes; the limit is {_options.MaxValueBytes}.", "value");
        }
    }

    private sealed class KeySerializer : BinaryObjectSerializer<string>
    {
        public override void Serialize(ref string obj) => writer.Write(obj);

        public override void Deserialize(out string obj) => obj = reader.ReadString();
    }

    private sealed class ValueSerializer(int maxValueBytes) : BinaryObjectSerializer<byte[]>
    {
        public override void Serialize(ref byte[] obj)
        {
            writer.Write(obj.Length);
            writer.Write(obj);
        }

        public override void Deserialize(out byte[] obj)
        {
            var length = reader.ReadInt32();
            if (length < 0 || length > maxValueBytes)
            {
                throw new InvalidDataException($"A stored value claims {length} bytes; the limit is {maxValueBytes}.");
            }

            obj = reader.ReadBytes(length);
        }
    }
}
