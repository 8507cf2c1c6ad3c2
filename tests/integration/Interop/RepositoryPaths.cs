namespace P2PInference.Tests.Integration.Interop;

internal static class RepositoryPaths
{
    /// <summary>The clone's root: the first ancestor of the test assembly holding P2PInference.sln.</summary>
    public static string Root { get; } = FindRoot();

    public static string InteropJs => Path.Combine(Root, "tests", "interop-js");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "P2PInference.sln"))) return dir.FullName;
        throw new InvalidOperationException("cannot find P2PInference.sln above " + AppContext.BaseDirectory);
    }
}
