namespace P2PInference.Tests.Integration.Engines;

/// <summary>Finds files under fixtures/ by walking up from the test binaries to the repository root.</summary>
internal static class FixturePaths
{
    private static readonly Lazy<string> Root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "P2PInference.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException($"No P2PInference.sln above {AppContext.BaseDirectory}.");
    });

    public static string OpenAi(string name) => Path.Combine(Root.Value, "fixtures", "mock-responses", "openai", name);

    public static string Corpus(string name) => Path.Combine(Root.Value, "fixtures", "test-data", "corpus", name);
}
