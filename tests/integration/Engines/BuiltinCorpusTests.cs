using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Integration.Engines;

/// <summary>The builtin engine trained from the corpus file in fixtures/, as a processor configured with CorpusPath does.</summary>
[CancelAfter(10000)]
public sealed class BuiltinCorpusTests
{
    [Test]
    public async Task BuiltinEngine_TrainedFromTheFixtureFile_MatchesTheEmbeddedCorpus()
    {
        using var fromFile = InferenceEngineFactory.Create(new EngineOptions { CorpusPath = FixturePaths.Corpus("builtin.txt") });
        using var embedded = InferenceEngineFactory.Create(new EngineOptions());
        var request = new InferenceRequest { Model = "builtin-small", Prompt = "When the power fails,", Seed = 11, MaxTokens = 30 };

        var a = new List<GeneratedToken>();
        await foreach (var t in fromFile.GenerateAsync(request, CancellationToken.None)) a.Add(t);
        var b = new List<GeneratedToken>();
        await foreach (var t in embedded.GenerateAsync(request, CancellationToken.None)) b.Add(t);

        Assert.That(a, Is.EqualTo(b));
        Assert.That(a, Is.Not.Empty);
    }
}
