using P2PInference.Tests.Shared;

namespace P2PInference.Tests.Integration.Engines;

internal static class FixturePaths
{
    public static string OpenAi(string name) => RepositoryPaths.Fixture("mock-responses", "openai", name);

    public static string Corpus(string name) => RepositoryPaths.Fixture("test-data", "corpus", name);
}
