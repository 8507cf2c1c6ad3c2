using System.Text.Json;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.E2E.Simulate;

/// <summary>
/// <c>p2pinference simulate</c> as separate processes: one seed gives one trace hash whatever the
/// process and whatever else loads the CPU, and the README's example runs as written.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class SimulateProcessTests
{
    private static readonly string[] Small = ["--seed", "5", "--gateways", "1", "--processors", "2", "--clients", "3", "--virtual-minutes", "1", "--json"];

    [Test, CancelAfter(300_000)]
    public async Task SameSeed_InTwoProcesses_OneUnderCpuLoad_GivesTheSameTraceHash(CancellationToken token)
    {
        var quiet = await CliProcess.RunAsync(token, ["simulate", .. Small]);
        string loadedHash;
        using (var load = new CpuLoad(Environment.ProcessorCount))
        {
            var loaded = await CliProcess.RunAsync(token, ["simulate", .. Small]);
            Assert.That(loaded.ExitCode, Is.Zero, loaded.Stderr);
            loadedHash = HashOf(loaded.Stdout);
        }

        Assert.That(quiet.ExitCode, Is.Zero, quiet.Stderr);
        Assert.That(loadedHash, Is.EqualTo(HashOf(quiet.Stdout)), "the busy cores slowed the second process but changed nothing it did");
    }

    [Test, CancelAfter(300_000)]
    public async Task ReadmeExample_RunsAsWritten_AndEveryInvariantHolds(CancellationToken token)
    {
        var readme = await File.ReadAllTextAsync(Path.Combine(RepositoryPaths.Root, "README.md"), token);
        const string prefix = "dotnet run --project src/Workers -- simulate ";
        var line = readme.Split('\n').Select(l => l.Trim()).Single(l => l.StartsWith(prefix, StringComparison.Ordinal));

        var result = await CliProcess.RunAsync(token, ["simulate", .. line[prefix.Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)]);

        Assert.That(result.ExitCode, Is.Zero, result.Stdout + result.Stderr);
        Assert.That(result.Stdout, Does.Contain("trace hash").And.Contain("compression").And.Contain("invariants"));
    }

    private static string HashOf(string json) => JsonDocument.Parse(json).RootElement.GetProperty("traceHash").GetString()!;

    /// <summary>Busy threads on every core for as long as it lives: the load the issue asks a replay to survive.</summary>
    private sealed class CpuLoad : IDisposable
    {
        private volatile bool _stop;
        private readonly Thread[] _threads;

        public CpuLoad(int threads)
        {
            _threads = Enumerable.Range(0, threads).Select(_ => new Thread(Spin) { IsBackground = true }).ToArray();
            foreach (var thread in _threads) thread.Start();
        }

        private void Spin()
        {
            var x = 0UL;
            while (!_stop) x = x * 6364136223846793005UL + 1;
            GC.KeepAlive(x);
        }

        public void Dispose()
        {
            _stop = true;
            foreach (var thread in _threads) thread.Join();
        }
    }
}
