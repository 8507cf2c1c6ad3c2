using Microsoft.Extensions.Configuration;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Unit.Engines;

public sealed class InferenceEngineFactoryTests
{
    private static IConfiguration Section(params (string Key, string? Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>("Engine:" + v.Key, v.Value)))
            .Build()
            .GetSection(InferenceEngineFactory.SectionName);

    [Test]
    public void Create_BuildsTheBuiltinEngine_ByDefault()
    {
        using var engine = InferenceEngineFactory.Create(Section());

        Assert.That(engine, Is.InstanceOf<BuiltinEngine>());
        Assert.That(engine.Models.Select(m => m.Name), Does.Contain("builtin-small"));
    }

    [Test]
    public void Create_AppliesTheTokenLimits_ToBuiltinModels()
    {
        using var engine = InferenceEngineFactory.Create(Section(("Kind", "BUILTIN"), ("MaxTokens", "64"), ("ContextLength", "100")));

        Assert.That(engine.Models.All(m => m.MaxOutputTokens == 64 && m.ContextLength == 100), Is.True);
    }

    [Test]
    public void Create_BuildsTheOpenAiEngine_WithTheConfiguredModels()
    {
        using var engine = InferenceEngineFactory.Create(Section(
            ("Kind", "openai"), ("BaseUrl", "http://127.0.0.1:11434/v1/"), ("Models:0", "llama3"), ("Models:1", "qwen2"), ("Timeout", "00:00:30")));

        var openAi = engine as OpenAiCompatibleEngine;
        Assert.That(openAi, Is.Not.Null);
        Assert.That(openAi!.Models.Select(m => m.Name), Is.EqualTo(new[] { "llama3", "qwen2" }));
        Assert.That(openAi.BaseUrl, Is.EqualTo(new Uri("http://127.0.0.1:11434")), "a trailing /v1 is not doubled");
    }

    [TestCase("gpt", "'gpt' is not known")]
    [TestCase("", "Engine:Kind is empty")]
    public void Create_RejectsAnUnknownKind(string kind, string expected)
    {
        var error = Assert.Throws<EngineConfigurationException>(() => InferenceEngineFactory.Create(Section(("Kind", kind))));

        Assert.That(error!.Errors, Has.Some.Contains(expected));
        Assert.That(error.Message, Does.Contain("builtin, openai"));
    }

    [Test]
    public void Create_RequiresABaseUrl_ForOpenAi()
    {
        var error = Assert.Throws<EngineConfigurationException>(() => InferenceEngineFactory.Create(Section(("Kind", "openai"))));

        Assert.That(error!.Errors, Has.Some.Contains("Engine:BaseUrl is required"));
    }

    [TestCase("not a url")]
    [TestCase("ftp://example.org")]
    [TestCase("/relative/path")]
    [TestCase("127.0.0.1:8080")]
    public void Create_RejectsABadBaseUrl(string url)
    {
        var error = Assert.Throws<EngineConfigurationException>(() => InferenceEngineFactory.Create(Section(("Kind", "openai"), ("BaseUrl", url))));

        Assert.That(error!.Errors, Has.Some.Contains("is not an absolute http or https URL"));
    }

    [Test]
    public void Validate_ReportsEveryProblem_AtOnce()
    {
        var errors = InferenceEngineFactory.Validate(new EngineOptions
        {
            Kind = "openai",
            MaxTokens = 0,
            Timeout = TimeSpan.FromSeconds(-1),
            Models = ["ok", " "],
        });

        Assert.That(errors, Has.Count.EqualTo(4));
    }

    [Test]
    public void Bind_RejectsAMisspelledKey_InsteadOfIgnoringIt()
    {
        var error = Assert.Throws<EngineConfigurationException>(() => InferenceEngineFactory.Bind(Section(("Kidn", "openai"))));

        Assert.That(error!.Message, Does.Contain("Kidn"));
    }

    [Test]
    public void Bind_RejectsAValueOfTheWrongType()
    {
        var error = Assert.Throws<EngineConfigurationException>(() => InferenceEngineFactory.Bind(Section(("Timeout", "soon"))));

        Assert.That(error!.Message, Does.Contain("Timeout"));
    }

    [Test]
    public void Validate_RejectsAMissingCorpusFile_AndOpenAiModelsOnBuiltin()
    {
        var errors = InferenceEngineFactory.Validate(new EngineOptions { CorpusPath = "/no/such/corpus.txt", Models = ["llama3"] });

        Assert.That(errors, Has.Count.EqualTo(2));
        Assert.That(errors, Has.Some.Contains("/no/such/corpus.txt"));
    }

    [Test]
    public void Validate_RequiresAModelPath_ForLlamaSharp_AndChecksItsLimits()
    {
        var errors = InferenceEngineFactory.Validate(new EngineOptions
        {
            Kind = "llamasharp",
            Threads = 0,
            MaxConcurrency = 0,
            ContextLength = 8,
            Models = ["llama3"],
        });

        Assert.That(errors, Has.Some.Contains("Engine:ModelPath is required"));
        Assert.That(errors, Has.Some.Contains("Engine:Threads"));
        Assert.That(errors, Has.Some.Contains("Engine:MaxConcurrency"));
        Assert.That(errors, Has.Some.Contains("Engine:ContextLength"));
        Assert.That(errors, Has.Some.Contains("Engine:Models applies to the openai engine"));
    }

    [Test]
    public void Create_RejectsAMissingModelFile_ForLlamaSharp()
    {
        var error = Assert.Throws<EngineConfigurationException>(() => InferenceEngineFactory.Create(Section(
            ("Kind", "llamasharp"), ("ModelPath", "/no/such/model.gguf"), ("Threads", "2"), ("MaxConcurrency", "2"))));

        Assert.That(error!.Errors, Has.Some.Contains("/no/such/model.gguf").And.Contains("does not exist"));
    }

    [Test]
    public void Create_RejectsAnUnknownKind_NamingEveryKind()
    {
        var error = Assert.Throws<EngineConfigurationException>(() => InferenceEngineFactory.Create(Section(("Kind", "gguf"))));

        Assert.That(error!.Message, Does.Contain("builtin, openai, llamasharp"));
    }

    [Test]
    public void Validate_DoesNotRepeatCredentials_OfABadBaseUrl()
    {
        var errors = InferenceEngineFactory.Validate(new EngineOptions { Kind = "openai", BaseUrl = "ftp://bob:hunter2@example.org/" });

        Assert.That(errors.Single(), Does.Not.Contain("hunter2"));
    }
}
