using System.Text;
using P2PInference.Facilities.Store;

namespace P2PInference.Tests.Integration.Store;

/// <summary>
/// The on-disk store across restarts, simulated kills, damaged files and unusable directories.
/// A kill is simulated in-process by <c>SimulateCrashAsync</c>: the file handles close with no
/// final commit and no checkpoint, so the next open sees only what the device already held.
/// </summary>
[TestFixture]
public sealed class DiskStoreDurabilityTests
{
    private string _directory = null!;

    [SetUp]
    public void SetUp() => _directory = Path.Combine(Path.GetTempPath(), "p2pinference-store-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
        else if (File.Exists(_directory))
        {
            File.Delete(_directory);
        }
    }

    [Test, CancelAfter(20000)]
    public async Task Reopen_AfterCleanShutdown_KeepsEverything(CancellationToken ct)
    {
        await using (var store = await OpenAsync(ct))
        {
            await store.PutAsync("a", Bytes("1"), ct);
            await store.PutAsync("big", new byte[1 << 20], ct);
            await store.DeleteAsync("a", ct);
            await store.PutAsync("b", Bytes("2"), ct);
        }

        await using var reopened = await OpenAsync(ct);
        Assert.That(await reopened.GetAsync("a", ct), Is.Null);
        Assert.That(await reopened.GetAsync("b", ct), Is.EqualTo(Bytes("2")));
        Assert.That(await reopened.GetAsync("big", ct), Has.Length.EqualTo(1 << 20));
    }

    [Test, CancelAfter(20000)]
    public async Task Crash_KeepsEveryAcknowledgedWrite_WithAndWithoutCheckpoint(CancellationToken ct)
    {
        var store = await OpenAsync(ct);
        await store.PutAsync("in-checkpoint", Bytes("1"), ct);
        await store.CheckpointAsync(ct);
        await store.PutAsync("in-log", Bytes("2"), ct);
        await store.CompareAndSwapAsync("in-checkpoint", Bytes("1"), Bytes("1b"), ct);
        await store.SimulateCrashAsync();

        await using var reopened = await OpenAsync(ct);
        Assert.That(await reopened.GetAsync("in-checkpoint", ct), Is.EqualTo(Bytes("1b")));
        Assert.That(await reopened.GetAsync("in-log", ct), Is.EqualTo(Bytes("2")));
    }

    [Test, CancelAfter(60000)]
    public async Task ConcurrentWriters_64x200_AllReadableAfterCrash(CancellationToken ct)
    {
        var store = await OpenAsync(ct);
        await Task.WhenAll(Enumerable.Range(0, 64).Select(w => Task.Run(
            async () =>
            {
                for (var i = 0; i < 200; i++)
                {
                    await store.PutAsync($"w{w}/{i}", BitConverter.GetBytes((w << 16) | i), ct);
                }
            },
            ct)));
        await store.SimulateCrashAsync();

        await using var reopened = await OpenAsync(ct);
        for (var w = 0; w < 64; w++)
        {
            for (var i = 0; i < 200; i++)
            {
                Assert.That(await reopened.GetAsync($"w{w}/{i}", ct), Is.EqualTo(BitConverter.GetBytes((w << 16) | i)), $"w{w}/{i}");
            }
        }
    }

    [Test, CancelAfter(20000)]
    public async Task TornTail_GarbageBeyondTheLastCommit_IsDiscarded(CancellationToken ct)
    {
        var store = await OpenAsync(ct);
        for (var i = 0; i < 50; i++)
        {
            await store.PutAsync("k" + i, Bytes("v" + i), ct);
        }

        var durableEnd = store.CommittedLogAddress;
        await store.SimulateCrashAsync();

        // The bytes of a record whose commit never completed: a header and half a payload.
        var garbage = new byte[300];
        new Random(7).NextBytes(garbage);
        using (var log = new FileStream(WalSegment(), FileMode.Open, FileAccess.Write))
        {
            log.Position = durableEnd;
            log.Write(garbage);
        }

        await using (var reopened = await OpenAsync(ct))
        {
            for (var i = 0; i < 50; i++)
            {
                Assert.That(await reopened.GetAsync("k" + i, ct), Is.EqualTo(Bytes("v" + i)));
            }

            await reopened.PutAsync("after", Bytes("torn tail"), ct);
        }

        await using var again = await OpenAsync(ct);
        Assert.That(await again.GetAsync("after", ct), Is.EqualTo(Bytes("torn tail")));
        Assert.That(await again.GetAsync("k49", ct), Is.EqualTo(Bytes("v49")));
    }

    [Test, CancelAfter(20000)]
    public async Task TornTail_FileCutAtTheLastCommit_KeepsEveryAcknowledgedWrite(CancellationToken ct)
    {
        var store = await OpenAsync(ct);
        for (var i = 0; i < 50; i++)
        {
            await store.PutAsync("k" + i, Bytes("v" + i), ct);
        }

        var durableEnd = store.CommittedLogAddress;
        await store.SimulateCrashAsync();
        using (var log = new FileStream(WalSegment(), FileMode.Open, FileAccess.Write))
        {
            log.SetLength(durableEnd);
        }

        await using var reopened = await OpenAsync(ct);
        for (var i = 0; i < 50; i++)
        {
            Assert.That(await reopened.GetAsync("k" + i, ct), Is.EqualTo(Bytes("v" + i)));
        }
    }

    [Test, CancelAfter(20000)]
    public async Task Open_ThrowsStoreException_WhenACommittedLogEntryIsDamaged(CancellationToken ct)
    {
        var store = await OpenAsync(ct);
        await store.PutAsync("k", Bytes(new string('v', 100)), ct);
        await store.PutAsync("k2", Bytes("v2"), ct);
        await store.SimulateCrashAsync();
        using (var log = new FileStream(WalSegment(), FileMode.Open, FileAccess.ReadWrite))
        {
            log.Position = 64 + 40;
            var b = log.ReadByte();
            log.Position = 64 + 40;
            log.WriteByte((byte)(b ^ 0x5A));
        }

        Assert.That(async () => await OpenAsync(ct), Throws.TypeOf<StoreException>().With.Property(nameof(StoreException.Path)).Not.Null);
    }

    [Test, CancelAfter(20000)]
    public async Task Open_ThrowsStoreException_WhenTheLogIsCutInsideCommittedData(CancellationToken ct)
    {
        var store = await OpenAsync(ct);
        for (var i = 0; i < 20; i++)
        {
            await store.PutAsync("k" + i, Bytes(new string('v', 100)), ct);
        }

        await store.SimulateCrashAsync();
        using (var log = new FileStream(WalSegment(), FileMode.Open, FileAccess.Write))
        {
            log.SetLength(600);
        }

        Assert.That(async () => await OpenAsync(ct), Throws.TypeOf<StoreException>());
    }

    [Test, CancelAfter(20000)]
    public async Task Open_ThrowsStoreException_WhenTheCheckpointIsCorrupted(CancellationToken ct)
    {
        await using (var store = await OpenAsync(ct))
        {
            await store.PutAsync("k", Bytes("v"), ct);
        }

        foreach (var file in Directory.GetFiles(Path.Combine(_directory, "kv-checkpoints"), "*", SearchOption.AllDirectories))
        {
            await File.WriteAllBytesAsync(file, Encoding.ASCII.GetBytes("not a checkpoint"), ct);
        }

        Assert.That(async () => await OpenAsync(ct), Throws.TypeOf<StoreException>().With.Message.Contains("checkpoint"));
    }

    [Test, CancelAfter(20000)]
    public async Task Open_RecoversTheOlderWholeCheckpoint_WhenANewerOneWasLeftBroken(CancellationToken ct)
    {
        // The process died after FASTER wrote a checkpoint with cut-short metadata and before the store discarded it.
        var store = await OpenAsync(ct);
        await store.PutAsync("in-checkpoint", Bytes("1"), ct);
        await store.CheckpointAsync(ct);
        await store.PutAsync("in-log", Bytes("2"), ct);
        await store.SimulateCrashAsync();
        var checkpoints = Path.Combine(_directory, "kv-checkpoints");
        var broken = Guid.NewGuid().ToString();
        foreach (var kind in new[] { "index-checkpoints", "cpr-checkpoints" })
        {
            var whole = Directory.GetDirectories(Path.Combine(checkpoints, kind)).Single();
            var copy = Path.Combine(checkpoints, kind, broken);
            Directory.CreateDirectory(copy);
            foreach (var file in Directory.GetFiles(whole))
            {
                var target = Path.Combine(copy, Path.GetFileName(file));
                File.Copy(file, target);
                if (Path.GetFileName(file).StartsWith("info.dat", StringComparison.Ordinal)) await File.WriteAllBytesAsync(target, [], ct);
            }
        }

        await using var reopened = await OpenAsync(ct);
        Assert.That(await reopened.GetAsync("in-checkpoint", ct), Is.EqualTo(Bytes("1")));
        Assert.That(await reopened.GetAsync("in-log", ct), Is.EqualTo(Bytes("2")));
        Assert.That(Directory.GetDirectories(Path.Combine(checkpoints, "cpr-checkpoints")).Select(Path.GetFileName), Does.Not.Contain(broken));
    }

    [Test, CancelAfter(20000)]
    public async Task Open_ThrowsStoreException_WhenTheLogDirectoryIsMissing(CancellationToken ct)
    {
        await using (var store = await OpenAsync(ct))
        {
            await store.PutAsync("k", Bytes("v"), ct);
        }

        Directory.Delete(Path.Combine(_directory, "wal"), recursive: true);
        Assert.That(async () => await OpenAsync(ct), Throws.TypeOf<StoreException>().With.Message.Contains("missing"));
    }

    [Test, CancelAfter(20000)]
    public async Task Open_ThrowsStoreException_WhenTheLogFilesAreFromBeforeTheCheckpoint(CancellationToken ct)
    {
        // Log files restored from an older copy than the checkpoint: operations in between are gone.
        await using (var store = await OpenAsync(ct))
        {
            await store.PutAsync("k", Bytes("v"), ct);
        }

        Directory.Delete(Path.Combine(_directory, "wal"), recursive: true);
        Directory.CreateDirectory(Path.Combine(_directory, "wal"));
        Assert.That(async () => await OpenAsync(ct), Throws.TypeOf<StoreException>().With.Message.Contains("does not continue"));
    }

    [Test]
    public async Task Open_ThrowsStoreException_WhenTheDataDirectoryIsAFile()
    {
        await File.WriteAllTextAsync(_directory, "I am a file");
        Assert.That(
            async () => await OpenAsync(CancellationToken.None),
            Throws.TypeOf<StoreException>().With.Property(nameof(StoreException.Path)).EqualTo(_directory).And.Message.Contains("is a file"));
    }

    [Test]
    public async Task Open_ThrowsStoreException_WhenTheDirectoryCannotBeCreated()
    {
        await File.WriteAllTextAsync(_directory, "a file where a parent directory should be");
        var below = Path.Combine(_directory, "store");
        Assert.That(
            async () => await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { DataDirectory = below }),
            Throws.TypeOf<StoreException>().With.Property(nameof(StoreException.Path)).EqualTo(below));
    }

    [Test]
    public void Open_ThrowsStoreException_WhenTheDirectoryIsMissingAndMayNotBeCreated()
    {
        Assert.That(
            async () => await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { DataDirectory = _directory, CreateIfMissing = false }),
            Throws.TypeOf<StoreException>().With.Message.Contains("does not exist"));
    }

    [Test]
    public async Task Open_ThrowsStoreException_WhenTheDirectoryHoldsSomethingElse()
    {
        Directory.CreateDirectory(_directory);
        await File.WriteAllTextAsync(Path.Combine(_directory, "photo.jpg"), "not a store");
        Assert.That(async () => await OpenAsync(CancellationToken.None), Throws.TypeOf<StoreException>().With.Message.Contains("not a store directory"));
    }

    [Test, CancelAfter(20000)]
    public async Task Open_ThrowsStoreException_WhenTheManifestIsCorrupted(CancellationToken ct)
    {
        await (await OpenAsync(ct)).DisposeAsync();
        await File.WriteAllTextAsync(Path.Combine(_directory, "STORE"), "garbage", ct);
        Assert.That(async () => await OpenAsync(ct), Throws.TypeOf<StoreException>().With.Message.Contains("manifest"));
    }

    [Test, CancelAfter(20000)]
    public async Task Open_ThrowsStoreException_WhenAnotherInstanceHoldsTheDirectory(CancellationToken ct)
    {
        await using var first = await OpenAsync(ct);
        Assert.That(async () => await OpenAsync(ct), Throws.TypeOf<StoreException>().With.Message.Contains("in use"));
    }

    private Task<FasterKeyValueStore> OpenAsync(CancellationToken ct) =>
        FasterKeyValueStore.OpenAsync(new FasterStoreOptions { DataDirectory = _directory, ExpectedKeyCount = 1L << 16, CheckpointInterval = TimeSpan.Zero }, ct);

    private string WalSegment() => Path.Combine(_directory, "wal", "log.0");

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);
}
