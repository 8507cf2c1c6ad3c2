using System.Diagnostics;
using System.Globalization;
using System.Text;
using P2PInference.Facilities.Store;

namespace P2PInference.Benchmarks.Store;

/// <summary>
/// Durable writes per second with 1 and 64 concurrent writers (group commit shares flushes between
/// them), on the temp directory and on tmpfs, against in-memory upserts (no log) as the baseline.
/// </summary>
public static class StoreBenchmark
{
    public static async Task<string> RunAsync()
    {
        var rows = new List<(string Case, int Writers, int Ops, double Seconds)>();
        var roots = new List<(string Name, string Root)> { ("temp dir", Path.GetTempPath()) };
        if (Directory.Exists("/dev/shm"))
        {
            roots.Add(("tmpfs", "/dev/shm"));
        }

        foreach (var (name, root) in roots)
        {
            foreach (var (writers, ops) in new[] { (1, 2_000), (64, 64_000) })
            {
                var directory = Path.Combine(root, "p2pinference-bench-" + Guid.NewGuid().ToString("N"));
                try
                {
                    await using var store = await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { DataDirectory = directory, ExpectedKeyCount = 1 << 18, CheckpointInterval = TimeSpan.Zero });
                    rows.Add(($"durable put, {name}", writers, ops, await PutAsync(store, writers, ops)));
                }
                finally
                {
                    Directory.Delete(directory, recursive: true);
                }
            }
        }

        foreach (var writers in new[] { 1, 64 })
        {
            await using var memory = await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { MemorySizeBytes = 256L << 20, ExpectedKeyCount = 1 << 20 });
            rows.Add(("in-memory put (baseline)", writers, 500_000, await PutAsync(memory, writers, 500_000)));
        }

        var baseline = rows.Where(r => r.Case.StartsWith("in-memory", StringComparison.Ordinal)).Max(r => r.Ops / r.Seconds);
        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"{"case",-28} {"writers",8} {"ops",9} {"ops/s",12} {"vs in-memory",13}");
        foreach (var (name, writers, ops, seconds) in rows)
        {
            var rate = ops / seconds;
            table.AppendLine(CultureInfo.InvariantCulture, $"{name,-28} {writers,8} {ops,9} {rate,12:N0} {rate / baseline,13:P1}");
        }

        return table.ToString();
    }

    private static async Task<double> PutAsync(IKeyValueStore store, int writers, int ops)
    {
        var value = new byte[100];
        var perWriter = ops / writers;
        var stopwatch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            for (var i = 0; i < perWriter; i++)
            {
                await store.PutAsync($"w{w}/k{i}", value, CancellationToken.None);
            }
        })));
        return stopwatch.Elapsed.TotalSeconds;
    }
}
