using System.Runtime.CompilerServices;
using P2PInference.Facilities.Store;
using P2PInference.TestKit.Simulation;

namespace P2PInference.TestKit.Store;

/// <summary>
/// The real <see cref="FasterKeyValueStore"/> on memory, for one test: created per test, deleted
/// on dispose, with a crash-restart that keeps exactly what was made durable.
/// </summary>
/// <remarks>
/// <para><b>Where the bytes live.</b> A fresh directory on tmpfs (<c>/dev/shm</c>, RAM; the system
/// temp directory where there is none). FASTER's <c>LocalMemoryDevice</c> was not used: it
/// reserves its whole capacity up front, its contents die with the device object, and the store's
/// checkpoint and commit files go through FASTER's file-based device factory anyway. On tmpfs the
/// store runs its production code path unchanged — the same log, commits, checkpoints and
/// recovery — at memory speed.</para>
/// <para><b>How durability is modelled.</b> "Durable" means exactly what the store means by it:
/// covered by a completed write-ahead-log commit (or a checkpoint). <see cref="CrashAndRestartAsync"/>
/// abandons the instance the way a kill would — no final commit, no checkpoint, file handles closed
/// with whatever the device already holds — and opens a new instance on the same directory, which
/// recovers. Every acknowledged write survives; a write not yet acknowledged may or may not, but is
/// never half-visible, because recovery stops at the last completed commit. (tmpfs survives the
/// process, not the machine; what is modelled is a process crash.)</para>
/// <para>The <see cref="RamStore"/> itself forwards to the current instance, so a test (or a worker
/// under test) keeps one reference across restarts; calls that race a crash fail as they would on a
/// real crash.</para>
/// <para><b>In a simulation.</b> FASTER completes its I/O on its own threads, so inside a
/// <see cref="SimulationExecutor"/> every call runs as real work outside the simulation
/// (<see cref="SimulationExecutor.RunOutsideAsync{T}(Func{Task{T}})"/>): virtual time stands still
/// while it is in flight and its result re-enters the simulation as one step.</para>
/// </remarks>
public sealed class RamStore : IKeyValueStore, IAsyncDisposable
{
    private readonly FasterStoreOptions _options;
    private FasterKeyValueStore _current;
    private bool _disposed;

    private RamStore(FasterStoreOptions options, FasterKeyValueStore current)
    {
        _options = options;
        _current = current;
    }

    /// <summary>The store instance serving now (replaced by each restart).</summary>
    public FasterKeyValueStore Current => Volatile.Read(ref _current);

    /// <summary>The store's directory on tmpfs.</summary>
    public string Directory => _options.DataDirectory!;

    /// <summary>How many times the store was restarted (crash or clean).</summary>
    public int Restarts { get; private set; }

    /// <summary>A new, empty store. <paramref name="timeProvider"/> drives its periodic checkpoint, which is off unless <paramref name="checkpointInterval"/> is given.</summary>
    public static async Task<RamStore> CreateAsync(TimeProvider? timeProvider = null, TimeSpan? checkpointInterval = null, CancellationToken cancellationToken = default)
    {
        var options = new FasterStoreOptions
        {
            DataDirectory = Path.Combine(RamRoot(), "p2pinference-ramstore-" + Guid.NewGuid().ToString("N")),
            MemorySizeBytes = 16L << 20,
            ExpectedKeyCount = 1L << 16,
            CheckpointInterval = checkpointInterval ?? TimeSpan.Zero,
            TimeProvider = timeProvider ?? TimeProvider.System,
        };
        try
        {
            return new RamStore(options, await Outside(() => FasterKeyValueStore.OpenAsync(options, cancellationToken)));
        }
        catch
        {
            TryDelete(options.DataDirectory);
            throw;
        }
    }

    /// <summary>
    /// Kills the store (no final commit, no checkpoint) and opens it again from what was durable.
    /// </summary>
    public async Task CrashAndRestartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await Outside(() => Current.SimulateCrashAsync());
        await ReopenAsync(cancellationToken);
    }

    /// <summary>Shuts the store down cleanly (final checkpoint) and opens it again.</summary>
    public async Task RestartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await Outside(() => Current.DisposeAsync().AsTask());
        await ReopenAsync(cancellationToken);
    }

    public ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken) =>
        SimulationExecutor.Current is null
            ? Current.GetAsync(key, cancellationToken)
            : new(Outside(() => Current.GetAsync(key, cancellationToken).AsTask()));

    public ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken) =>
        SimulationExecutor.Current is null
            ? Current.PutAsync(key, value, cancellationToken)
            : new(Outside(() => Current.PutAsync(key, value, cancellationToken).AsTask()));

    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken) =>
        SimulationExecutor.Current is null
            ? Current.DeleteAsync(key, cancellationToken)
            : new(Outside(() => Current.DeleteAsync(key, cancellationToken).AsTask()));

    public ValueTask<bool> CompareAndSwapAsync(string key, ReadOnlyMemory<byte>? expected, ReadOnlyMemory<byte>? replacement, CancellationToken cancellationToken) =>
        SimulationExecutor.Current is null
            ? Current.CompareAndSwapAsync(key, expected, replacement, cancellationToken)
            : new(Outside(() => Current.CompareAndSwapAsync(key, expected, replacement, cancellationToken).AsTask()));

    public IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanAsync(string prefix, CancellationToken cancellationToken) =>
        SimulationExecutor.Current is null ? Current.ScanAsync(prefix, cancellationToken) : ScanOutsideAsync(prefix, cancellationToken);

    /// <summary>A sub-store over this RAM store, so it too follows restarts.</summary>
    public IKeyValueStore SubStore(string name) => new PrefixedKeyValueStore(this, name);

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await Outside(() => Current.DisposeAsync().AsTask());
        TryDelete(Directory);
    }

    private async Task ReopenAsync(CancellationToken cancellationToken)
    {
        Volatile.Write(ref _current, await Outside(() => FasterKeyValueStore.OpenAsync(_options, cancellationToken)));
        Restarts++;
    }

    /// <summary>Inside a simulation, the whole scan is read outside it (FASTER's I/O completes on its own threads), then handed out.</summary>
    private async IAsyncEnumerable<KeyValuePair<string, byte[]>> ScanOutsideAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var store = Current;
        var entries = await Outside(async () =>
        {
            var read = new List<KeyValuePair<string, byte[]>>();
            await foreach (var entry in store.ScanAsync(prefix, cancellationToken)) read.Add(entry);
            return read;
        });
        foreach (var entry in entries) yield return entry;
    }

    /// <summary>Runs FASTER work outside the running simulation, if any (see the remarks); directly otherwise.</summary>
    private static Task<T> Outside<T>(Func<Task<T>> operation) =>
        SimulationExecutor.Current is { } simulation ? simulation.RunOutsideAsync(operation) : operation();

    private static Task Outside(Func<Task> operation) =>
        SimulationExecutor.Current is { } simulation ? simulation.RunOutsideAsync(operation) : operation();

    private static string RamRoot()
    {
        const string shm = "/dev/shm";
        return System.IO.Directory.Exists(shm) ? shm : Path.GetTempPath();
    }

    private static void TryDelete(string path)
    {
        try
        {
            System.IO.Directory.Delete(path, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: a leftover directory on tmpfs is only a little memory until reboot.
        }
    }
}
