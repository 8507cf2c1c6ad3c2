using System.Text;
using P2PInference.Facilities.Store;

namespace P2PInference.Tests.Integration.Store;

[TestFixture]
public sealed class DurableLogTests
{
    private string _directory = null!;

    [SetUp]
    public void SetUp() => _directory = Path.Combine(Path.GetTempPath(), "p2pinference-log-" + Guid.NewGuid().ToString("N"));

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
    public async Task Scan_ReturnsEveryAppendedEntry_InOrder_AcrossAReopen(CancellationToken ct)
    {
        var positions = new List<long>();
        await using (var log = await OpenAsync(ct))
        {
            for (var i = 0; i < 100; i++)
            {
                positions.Add(await log.AppendAsync(Bytes("entry " + i), ct));
            }

            await log.AppendAsync(ReadOnlyMemory<byte>.Empty, ct);
        }

        Assert.That(positions, Is.Ordered.Ascending);
        await using var reopened = await OpenAsync(ct);
        var entries = await ReadAllAsync(reopened, ct);
        Assert.That(entries.Take(100).Select(e => Encoding.UTF8.GetString(e.Data)), Is.EqualTo(Enumerable.Range(0, 100).Select(i => "entry " + i)));
        Assert.That(entries.Take(100).Select(e => e.Position), Is.EqualTo(positions));
        Assert.That(entries[100].Data, Is.Empty);
    }

    [Test, CancelAfter(30000)]
    public async Task ConcurrentAppends_AreAllThere_AfterACrash(CancellationToken ct)
    {
        var log = await OpenAsync(ct);
        await Task.WhenAll(Enumerable.Range(0, 32).Select(w => Task.Run(
            async () =>
            {
                for (var i = 0; i < 50; i++)
                {
                    await log.AppendAsync(Bytes($"{w}/{i}"), ct);
                }
            },
            ct)));
        await log.SimulateCrashAsync();

        await using var reopened = await OpenAsync(ct);
        var entries = (await ReadAllAsync(reopened, ct)).Select(e => Encoding.UTF8.GetString(e.Data)).ToList();
        Assert.That(entries, Has.Count.EqualTo(32 * 50));
        Assert.That(entries, Is.Unique);
    }

    [Test, CancelAfter(20000)]
    public async Task TornTail_BeyondTheLastCommit_IsDiscarded(CancellationToken ct)
    {
        var log = await OpenAsync(ct);
        await log.AppendAsync(Bytes("kept"), ct);
        var durableEnd = log.CommittedAddress;
        await log.SimulateCrashAsync();
        using (var file = new FileStream(Path.Combine(_directory, "log", "log.0"), FileMode.Open, FileAccess.Write))
        {
            file.Position = durableEnd;
            file.Write(new byte[] { 0x10, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 });
        }

        await using var reopened = await OpenAsync(ct);
        var entries = await ReadAllAsync(reopened, ct);
        Assert.That(entries.Select(e => Encoding.UTF8.GetString(e.Data)), Is.EqualTo(new[] { "kept" }));
    }

    [Test, CancelAfter(20000)]
    public async Task Scan_ThrowsStoreException_WhenACommittedEntryIsDamaged(CancellationToken ct)
    {
        await using (var log = await OpenAsync(ct))
        {
            await log.AppendAsync(Bytes(new string('x', 64)), ct);
        }

        using (var file = new FileStream(Path.Combine(_directory, "log", "log.0"), FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = 64 + 30;
            file.WriteByte((byte)'y');
        }

        await using var reopened = await OpenAsync(ct);
        Assert.That(async () => await ReadAllAsync(reopened, ct), Throws.TypeOf<StoreException>());
    }

    [Test]
    public async Task Open_ThrowsStoreException_WhenTheDirectoryIsAFile()
    {
        await File.WriteAllTextAsync(_directory, "file");
        Assert.That(async () => await OpenAsync(CancellationToken.None), Throws.TypeOf<StoreException>().With.Property(nameof(StoreException.Path)).EqualTo(_directory));
    }

    [Test, CancelAfter(20000)]
    public async Task Open_ThrowsStoreException_WhenTheDirectoryHoldsAKeyValueStore(CancellationToken ct)
    {
        await (await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { DataDirectory = _directory, ExpectedKeyCount = 1024 }, ct)).DisposeAsync();
        Assert.That(async () => await OpenAsync(ct), Throws.TypeOf<StoreException>().With.Message.Contains("manifest"));
    }

    [Test, CancelAfter(20000)]
    public async Task Append_RejectsAnOversizedEntry(CancellationToken ct)
    {
        await using var log = await DurableLog.OpenAsync(new DurableLogOptions { Directory = _directory, MaxEntryBytes = 1024 }, ct);
        Assert.That(async () => await log.AppendAsync(new byte[1025], ct), Throws.ArgumentException);
    }

    private Task<DurableLog> OpenAsync(CancellationToken ct) => DurableLog.OpenAsync(new DurableLogOptions { Directory = _directory }, ct);

    private static async Task<List<DurableLogEntry>> ReadAllAsync(DurableLog log, CancellationToken ct)
    {
        var entries = new List<DurableLogEntry>();
        await foreach (var entry in log.ScanAsync(ct))
        {
            entries.Add(entry);
        }

        return entries;
    }

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);
}
