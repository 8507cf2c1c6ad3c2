using System.Diagnostics;
using P2PInference.Facilities.Store;
using Microsoft.Extensions.Time.Testing;

namespace P2PInference.Tests.Integration.Store;

/// <summary>
/// The store on a full disk: a 2 MiB tmpfs mounted for the test (needs root; skipped otherwise). A
/// write whose commit fails is an error to its caller and is not in force afterwards — not in
/// memory, not after a restart — and the store works again once space frees.
/// </summary>
[TestFixture, NonParallelizable]
public sealed class StoreDiskFullTests
{
    private string _mount = null!;
    private readonly List<FailClosedKeyValueStore> _stores = [];

    [SetUp]
    public async Task MountAsync()
    {
        // A full disk is the point of this test: where one cannot be made, say so as a failure, never a skip.
        if (!OperatingSystem.IsLinux()) Assert.Fail("the full-disk test needs Linux, to mount a small tmpfs");
        _mount = Path.Combine(Path.GetTempPath(), "p2pinference-full-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_mount);
        if (await RunAsync("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", _mount) != 0)
        {
            Directory.Delete(_mount);
            Assert.Fail($"cannot mount a 2 MiB tmpfs at {_mount}: the full-disk test needs root (or CAP_SYS_ADMIN), as CI has");
        }
    }

    [TearDown]
    public async Task UnmountAsync()
    {
        foreach (var store in _stores) await store.DisposeAsync();
        _stores.Clear();
        if (_mount is null || !Directory.Exists(_mount)) return;
        await RunAsync("umount", _mount);
        Directory.Delete(_mount, recursive: true);
    }

    private static async Task<int> RunAsync(string file, params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        await process.WaitForExitAsync();
        return process.ExitCode;
    }

    private FasterStoreOptions Options(TimeProvider time) => new()
    {
        DataDirectory = Path.Combine(_mount, "store"),
        MemorySizeBytes = 8L << 20,
        ExpectedKeyCount = 1 << 12,
        TimeProvider = time,
    };

    private async Task<FailClosedKeyValueStore> OpenAsync(TimeProvider time, CancellationToken ct)
    {
        var store = await FailClosedKeyValueStore.OpenAsync(Options(time), TimeSpan.FromSeconds(5), ct);
        _stores.Add(store);
        return store;
    }

    /// <summary>Fills what is left of the disk with a file of its own; returns its path.</summary>
    private async Task<string> FillDiskAsync(CancellationToken ct)
    {
        var filler = Path.Combine(_mount, "filler");
        await using var file = new FileStream(filler, FileMode.Create, FileAccess.Write, FileShare.None, 4096, FileOptions.None);
        var chunk = new byte[4096];
        try
        {
            while (true)
            {
                await file.WriteAsync(chunk, ct);
                await file.FlushAsync(ct);
            }
        }
        catch (IOException)
        {
            // Full.
        }
        return filler;
    }

    [Test, CancelAfter(60_000)]
    public async Task FailedWrite_IsAnError_IsNotInForce_AndTheStoreWorksAgainWhenSpaceFrees(CancellationToken ct)
    {
        var time = new FakeTimeProvider();
        var store = await OpenAsync(time, ct);
        await store.PutAsync("user/1/key", "active"u8.ToArray(), ct);
        var filler = await FillDiskAsync(ct);

        // A revoke on the full disk: some write soon finds no room for its commit.
        StoreException? failure = null;
        var attempts = 0;
        for (; failure is null && attempts < 10_000; attempts++)
        {
            try
            {
                await store.PutAsync("user/1/key", System.Text.Encoding.UTF8.GetBytes($"revoked {attempts}"), ct);
            }
            catch (StoreException e)
            {
                failure = e;
            }
        }
        Assert.That(failure, Is.Not.Null, "a write failed on the full disk");
        TestContext.Out.WriteLine($"write {attempts} failed: {failure!.Message}");
        Assert.That(store.IsFailed, Is.True);
        var lastAcknowledged = attempts >= 2 ? $"revoked {attempts - 2}" : "active";

        // Until it is reopened from disk, the store answers nothing rather than what memory holds beyond the disk.
        await Assert.ThatAsync(async () => await store.GetAsync("user/1/key", ct), Throws.InstanceOf<StoreException>());
        await Assert.ThatAsync(async () => await store.PutAsync("other", "x"u8.ToArray(), ct), Throws.InstanceOf<StoreException>());

        File.Delete(filler);
        time.Advance(FailClosedKeyValueStore.DefaultRetryInterval);

        Assert.That(System.Text.Encoding.UTF8.GetString((await store.GetAsync("user/1/key", ct))!), Is.EqualTo(lastAcknowledged),
            "the failed write is not in force; the last acknowledged one is");
        await store.PutAsync("user/1/key", "revoked again"u8.ToArray(), ct);
        Assert.That(await store.GetAsync("user/1/key", ct), Is.EqualTo("revoked again"u8.ToArray()), "the store works again");
        Assert.That(store.IsFailed, Is.False);

        await store.DisposeAsync();
        _stores.Clear();
        var restarted = await OpenAsync(time, ct);
        Assert.That(await restarted.GetAsync("user/1/key", ct), Is.EqualTo("revoked again"u8.ToArray()), "and what it acknowledged survives a restart");
    }

    [Test, CancelAfter(60_000)]
    public async Task Checkpoint_OnAFullDisk_IsAnError_AndKeepsThePreviousOne_SoEveryAcknowledgedWriteSurvivesACrash(CancellationToken ct)
    {
        var options = Options(new FakeTimeProvider());
        var store = await FasterKeyValueStore.OpenAsync(options, ct);
        Exception? failure = null;
        try
        {
            await store.PutAsync("before", "checkpointed"u8.ToArray(), ct);
            await store.CheckpointAsync(ct);
            await store.PutAsync("after", "only in the log"u8.ToArray(), ct);
            var filler = await FillDiskAsync(ct);
            try
            {
                await store.CheckpointAsync(ct);
            }
            catch (StoreException e)
            {
                failure = e;
            }
            File.Delete(filler);
        }
        finally
        {
            // A kill, not a clean close: a clean close would take a good checkpoint now that there is room.
            await store.SimulateCrashAsync();
        }
        TestContext.Out.WriteLine($"checkpoint on the full disk: {failure?.Message ?? "reported as taken"}");

        var reopened = await FasterKeyValueStore.OpenAsync(options, ct);
        try
        {
            var before = await reopened.GetAsync("before", ct);
            var after = await reopened.GetAsync("after", ct);
            Assert.Multiple(() =>
            {
                Assert.That(failure, Is.Not.Null, "the checkpoint that could not be written is reported as failed");
                Assert.That(before, Is.EqualTo("checkpointed"u8.ToArray()));
                Assert.That(after, Is.EqualTo("only in the log"u8.ToArray()), "the log was not truncated for a checkpoint that is not there");
            });
        }
        finally
        {
            await reopened.DisposeAsync();
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task DurableLog_OnAFullDisk_FailsTheAppend_AndKeepsEveryAcknowledgedEntry(CancellationToken ct)
    {
        var options = new DurableLogOptions { Directory = Path.Combine(_mount, "log"), MaxEntryBytes = 1024 };
        var acknowledged = new List<string>();
        Exception? failure = null;
        var log = await DurableLog.OpenAsync(options, ct);
        try
        {
            for (var i = 0; i < 3; i++)
            {
                await log.AppendAsync(System.Text.Encoding.UTF8.GetBytes($"entry {i}"), ct);
                acknowledged.Add($"entry {i}");
            }
            await FillDiskAsync(ct);
            for (var i = 3; failure is null && i < 10_000; i++)
            {
                try
                {
                    await log.AppendAsync(System.Text.Encoding.UTF8.GetBytes($"entry {i}"), ct);
                    acknowledged.Add($"entry {i}");
                }
                catch (Exception e) when (e is StoreException or IOException)
                {
                    failure = e;
                }
            }
        }
        finally
        {
            await log.DisposeAsync();
        }
        Assert.That(failure, Is.Not.Null, "an append failed on the full disk");
        TestContext.Out.WriteLine($"append {acknowledged.Count} failed: {failure!.Message}");

        File.Delete(Path.Combine(_mount, "filler"));
        var reopened = await DurableLog.OpenAsync(options, ct);
        var entries = new List<string>();
        try
        {
            await foreach (var entry in reopened.ScanAsync(ct)) entries.Add(System.Text.Encoding.UTF8.GetString(entry.Data));
        }
        finally
        {
            await reopened.DisposeAsync();
        }

        Assert.That(entries.Take(acknowledged.Count), Is.EqualTo(acknowledged), "every acknowledged entry survives, in order");
    }
}
