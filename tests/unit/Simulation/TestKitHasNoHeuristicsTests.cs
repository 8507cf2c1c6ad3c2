using P2PInference.Tests.Shared;

namespace P2PInference.Tests.Unit.Simulation;

/// <summary>
/// The TestKit knows when a simulation is idle because it owns the run queue: nothing in it may
/// guess idleness from the process (/proc, thread-pool counters) or bound a wait by real time.
/// </summary>
[TestFixture]
public sealed class TestKitHasNoHeuristicsTests
{
    private static readonly string[] Forbidden = ["/proc", "ThreadPool.", "PendingWorkItemCount", "ThreadCount", "Stopwatch"];

    [Test]
    public void TestKitSources_UseNoProcessInspectionOrRealTimeBudget()
    {
        var testKit = Path.Combine(RepositoryPaths.Root, "src", "TestKit");
        var sources = Directory.EnumerateFiles(testKit, "*.cs", SearchOption.AllDirectories)
            .Where(path => !IsBuildOutput(Path.GetRelativePath(testKit, path)))
            .ToList();

        var offences = sources
            .SelectMany(path => File.ReadLines(path).Select((line, index) => (path, line, number: index + 1)))
            .SelectMany(l => Forbidden.Where(word => l.line.Contains(word, StringComparison.Ordinal))
                .Select(word => $"{Path.GetRelativePath(testKit, l.path)}:{l.number}: {word}"))
            .ToList();

        Assert.That(sources, Is.Not.Empty, "the TestKit's sources were found");
        Assert.That(offences, Is.Empty);
    }

    private static bool IsBuildOutput(string relativePath)
    {
        var first = relativePath.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar)[0];
        return first is "bin" or "obj";
    }
}
