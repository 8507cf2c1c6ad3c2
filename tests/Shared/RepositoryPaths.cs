namespace P2PInference.Tests.Shared;

/// <summary>
/// Paths inside the clone the tests and benchmarks run from: the root is the first ancestor of
/// the binaries (or of the working directory) that holds P2PInference.sln. Linked into every test
/// project, so there is one way to find a fixture.
/// </summary>
internal static class RepositoryPaths
{
    private static readonly Lazy<string?> RootOrNull = new(FindRoot);

    /// <exception cref="InvalidOperationException">The binaries do not live inside a clone.</exception>
    public static string Root => RootOrNull.Value
        ?? throw new InvalidOperationException("cannot find P2PInference.sln above " + AppContext.BaseDirectory);

    public static bool IsInsideClone => RootOrNull.Value is not null;

    public static string InteropJs => Path.Combine(Root, "tests", "interop-js");

    public static string Fixture(params string[] parts) => Path.Combine([Root, "fixtures", .. parts]);

    private static string? FindRoot()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "P2PInference.sln"))) return dir.FullName;
        return null;
    }
}
