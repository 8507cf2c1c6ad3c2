using P2PInference.TestKit;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Unit.Engines;

[CancelAfter(10000)]
public sealed class BuiltinEngineTests
{
    private const string Model = BuiltinEngineOptions.DefaultModelName;

    // Trained once from the corpus embedded in the program, as a processor does at start-up.
    private static readonly Lazy<BuiltinEngine> Shared = new(() => new BuiltinEngine(new BuiltinEngineOptions()));
    private static readonly Lazy<BuiltinEngine> Continuous = new(() => new BuiltinEngine(new BuiltinEngineOptions { StopAtEndOfText = false }));

    private static InferenceRequest Request(string prompt, int maxTokens = 40, double temperature = 0.9, int? seed = 7, string model = Model) =>
        new() { Model = model, Prompt = prompt, MaxTokens = maxTokens, Temperature = temperature, Seed = seed };

    private static async Task<List<GeneratedToken>> CollectAsync(IInferenceEngine engine, InferenceRequest request, CancellationToken cancellationToken = default)
    {
        var tokens = new List<GeneratedToken>();
        await foreach (var token in engine.GenerateAsync(request, cancellationToken)) tokens.Add(token);
        return tokens;
    }

    private static string TextOf(IEnumerable<GeneratedToken> tokens) => string.Concat(tokens.Select(t => t.Text));

    [Test]
    public void Models_ListTheTwoBuiltinModels_WithTheirLimits()
    {
        var models = Shared.Value.Models;

        Assert.That(models.Select(m => m.Name), Is.EqualTo(new[] { "builtin-small", "builtin-tiny" }));
        Assert.That(models.All(m => m.ContextLength == 2048 && m.MaxOutputTokens == 512 && m.Description.Length > 0), Is.True);
        Assert.That(Shared.Value.Kind, Is.EqualTo("builtin"));
        Assert.That(Shared.Value.CorpusTokenCount, Is.GreaterThan(2000), "the shipped corpus is embedded and trained on");
    }

    [Test]
    public async Task Generate_GivesSameTokens_ForSameSeedAndTemperature()
    {
        var seed = TestSeed.Choose();
        var first = await CollectAsync(Continuous.Value, Request("The weather was", seed: seed, temperature: 1.2));
        var second = await CollectAsync(Continuous.Value, Request("The weather was", seed: seed, temperature: 1.2));

        Assert.That(second, Is.EqualTo(first));
        Assert.That(TextOf(first), Is.Not.Empty);
    }

    [Test]
    public async Task Generate_IsGreedyAndIgnoresSeed_AtTemperatureZero()
    {
        var a = await CollectAsync(Continuous.Value, Request("A peer is known by its", temperature: 0, seed: 1));
        var b = await CollectAsync(Continuous.Value, Request("A peer is known by its", temperature: 0, seed: 99));
        var c = await CollectAsync(Continuous.Value, Request("A peer is known by its", temperature: 0, seed: null));

        Assert.That(TextOf(b), Is.EqualTo(TextOf(a)));
        Assert.That(TextOf(c), Is.EqualTo(TextOf(a)));
        Assert.That(TextOf(a), Does.StartWith(" public key"));
    }

    [Test]
    public async Task Generate_DiffersBetweenSeeds_AtPositiveTemperature()
    {
        var outputs = new HashSet<string>();
        for (var seed = 1; seed <= 6; seed++)
            outputs.Add(TextOf(await CollectAsync(Continuous.Value, Request("The", seed: seed, temperature: 1.0, maxTokens: 30))));

        Assert.That(outputs, Has.Count.GreaterThan(1));
    }

    [Test]
    public async Task Generate_ReportsUsage_OnTheLastToken_PromptWordsAndTokensProduced()
    {
        var tokens = await CollectAsync(Continuous.Value, Request("A peer is known by its", temperature: 0, maxTokens: 5));

        Assert.Multiple(() =>
        {
            Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Length));
            Assert.That(tokens[^1].Usage, Is.EqualTo(new TokenUsage(PromptTokens: 6, CompletionTokens: 5)));
            Assert.That(tokens.Take(tokens.Count - 1).Select(t => t.Usage), Is.All.Null, "usage comes once, at the end");
        });
    }

    [Test]
    public async Task Generate_ForAChat_ReadsEveryMessage_AndContinuesFromTheLast()
    {
        var chat = new InferenceRequest
        {
            Model = Model,
            Messages = [new ChatMessage("system", "Answer briefly."), new ChatMessage("user", "After dinner, the kettle")],
            MaxTokens = 3,
            Temperature = 0,
        };

        var tokens = await CollectAsync(Shared.Value, chat);

        Assert.Multiple(() =>
        {
            Assert.That(tokens[0].Text, Is.EqualTo(" boils"), "the same continuation as the last message alone");
            Assert.That(tokens[^1].Usage!.PromptTokens, Is.EqualTo(3 + 5), "both messages were read, words and punctuation marks");
        });
    }

    [Test]
    public async Task Generate_WithATinyTopP_DrawsOnlyTheLikeliestWord_WhateverTheSeed()
    {
        var greedy = TextOf(await CollectAsync(Continuous.Value, Request("The weather was", temperature: 0, maxTokens: 12)));
        var outputs = new HashSet<string>();
        for (var seed = 1; seed <= 4; seed++)
        {
            var request = Request("The weather was", temperature: 1.5, seed: seed, maxTokens: 12) with { TopP = 1e-9 };
            outputs.Add(TextOf(await CollectAsync(Continuous.Value, request)));
        }

        Assert.That(outputs, Is.EquivalentTo(new[] { greedy }));
    }

    [TestCase(0.0)]
    [TestCase(1.5)]
    [TestCase(double.NaN)]
    public void Generate_RefusesATopPOutsideZeroToOne(double topP) =>
        Assert.That(async () => await CollectAsync(Shared.Value, Request("x") with { TopP = topP }),
            Throws.TypeOf<InferenceException>().With.Property(nameof(InferenceException.Kind)).EqualTo(InferenceErrorKind.InvalidRequest));

    [Test]
    public async Task Generate_ContinuesFromThePromptsLastWords()
    {
        var tokens = await CollectAsync(Shared.Value, Request("After dinner, the kettle", temperature: 0, maxTokens: 3));

        Assert.That(tokens[0].Text, Is.EqualTo(" boils"));
    }

    [Test]
    public async Task Generate_StartsANewSentence_WhenThePromptsWordsAreUnknown()
    {
        var tokens = await CollectAsync(Shared.Value, Request("zzqx blorf", maxTokens: 5, seed: 3));

        Assert.That(tokens, Is.Not.Empty);
        Assert.That(char.IsUpper(tokens[0].Text.TrimStart()[0]), Is.True, $"first token '{tokens[0].Text}'");
    }

    [Test]
    public async Task Generate_WritesTheCorpusSentence_WithSpacesAndPunctuation()
    {
        using var engine = new BuiltinEngine(new BuiltinEngineOptions { CorpusText = "The cat sat on the mat.\n\nA dog ran." });

        var tokens = await CollectAsync(engine, Request("The cat", temperature: 0));

        Assert.That(tokens.Select(t => t.Text), Is.EqualTo(new[] { " sat", " on", " the", " mat", ".", "" }));
        Assert.That(tokens.Select(t => t.Index), Is.EqualTo(Enumerable.Range(0, 6)));
        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Stop), "the paragraph ended");
        Assert.That(tokens.Take(5).All(t => t.FinishReason is null), Is.True);
    }

    [Test]
    public void Generate_StreamsOneTokenPerStep_PacedByTheClock() => SimulationTest.Run(async sim =>
    {
        var time = sim.Clock;
        using var engine = new BuiltinEngine(new BuiltinEngineOptions
        {
            CorpusText = "The cat sat on the mat.",
            TokenInterval = TimeSpan.FromMilliseconds(50),
            TimeProvider = time,
        });
        await using var tokens = engine.GenerateAsync(Request("The cat", temperature: 0), CancellationToken.None).GetAsyncEnumerator();

        var first = tokens.MoveNextAsync();
        Assert.That(first.IsCompleted, Is.False, "no token before its time");
        await time.AdvanceAsync(TimeSpan.FromMilliseconds(50));
        Assert.That(await first, Is.True);
        Assert.That(tokens.Current.Text, Is.EqualTo(" sat"));

        var second = tokens.MoveNextAsync();
        Assert.That(second.IsCompleted, Is.False, "the second token waits for the clock too");
        await time.AdvanceAsync(TimeSpan.FromMilliseconds(50));
        Assert.That(await second, Is.True);
        Assert.That(tokens.Current.Text, Is.EqualTo(" on"));
    });

    [Test]
    public async Task Generate_Stops_WhenCancelledMidStream()
    {
        using var cts = new CancellationTokenSource();
        var received = new List<GeneratedToken>();

        Assert.That(async () =>
        {
            await foreach (var token in Continuous.Value.GenerateAsync(Request("The", maxTokens: 500), cts.Token))
            {
                received.Add(token);
                if (received.Count == 3) await cts.CancelAsync();
            }
        }, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(received, Has.Count.EqualTo(3), "no token after the cancellation");
        await Task.CompletedTask;
    }

    [Test]
    public async Task Generate_Stops_WhenCancelledWhileWaitingForTheNextToken()
    {
        // Never moved: the token is cancelled while the engine waits on this clock.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        using var engine = new BuiltinEngine(new BuiltinEngineOptions
        {
            CorpusText = "The cat sat on the mat.",
            TokenInterval = TimeSpan.FromSeconds(1),
            TimeProvider = time,
        });
        using var cts = new CancellationTokenSource();
        await using var tokens = engine.GenerateAsync(Request("The cat"), cts.Token).GetAsyncEnumerator();

        var next = tokens.MoveNextAsync();
        await cts.CancelAsync();

        Assert.That(async () => await next, Throws.InstanceOf<OperationCanceledException>());
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(64)]
    public async Task Generate_ProducesExactlyMaxTokens_WhenTheTextRunsOn(int maxTokens)
    {
        var tokens = await CollectAsync(Continuous.Value, Request("The", maxTokens: maxTokens, seed: TestSeed.Choose()));

        Assert.That(tokens, Has.Count.EqualTo(maxTokens));
        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Length));
    }

    [Test]
    public async Task Generate_NeverExceedsMaxTokens_WhenParagraphsEnd()
    {
        var seed = TestSeed.Choose();
        for (var i = 0; i < 20; i++)
        {
            var tokens = await CollectAsync(Shared.Value, Request("The", maxTokens: 12, seed: seed + i));
            Assert.That(tokens.Count(t => t.Text.Length > 0), Is.LessThanOrEqualTo(12));
            Assert.That(tokens[^1].FinishReason, Is.Not.Null);
        }
    }

    [Test]
    public async Task Generate_EndsBeforeAStopSequence_SplitOverTokens()
    {
        using var engine = new BuiltinEngine(new BuiltinEngineOptions { CorpusText = "The cat sat on the mat." });

        var tokens = await CollectAsync(engine, Request("The cat", temperature: 0) with { Stop = ["the mat"] });

        Assert.That(TextOf(tokens), Is.EqualTo(" sat on "));
        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Stop));
    }

    [Test]
    public async Task Generate_UsesChatMessages_WhenGiven()
    {
        var request = new InferenceRequest
        {
            Model = Model,
            Messages = [new ChatMessage("system", "You are terse."), new ChatMessage("user", "the kettle")],
            Temperature = 0,
            MaxTokens = 1,
        };

        var tokens = await CollectAsync(Shared.Value, request);

        Assert.That(tokens.Single().Text, Is.EqualTo(" boils"));
    }

    [Test]
    public async Task Generate_UsesTheSeedSource_WhenTheRequestHasNoSeed()
    {
        var seed = TestSeed.Choose();
        using var a = new BuiltinEngine(new BuiltinEngineOptions { StopAtEndOfText = false, SeedSource = new Random(seed) });
        using var b = new BuiltinEngine(new BuiltinEngineOptions { StopAtEndOfText = false, SeedSource = new Random(seed) });

        var fromA = TextOf(await CollectAsync(a, Request("The", seed: null, temperature: 1.5)));
        var fromB = TextOf(await CollectAsync(b, Request("The", seed: null, temperature: 1.5)));

        Assert.That(fromB, Is.EqualTo(fromA));
    }

    [Test]
    public void Generate_ThrowsModelNotFound_ForAnUnknownModel()
    {
        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(Shared.Value, Request("The", model: "gpt-99")));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.ModelNotFound));
        Assert.That(error.Message, Does.Contain("gpt-99").And.Contain("builtin-small"));
    }

    [TestCase("")]
    [TestCase("   \n\t")]
    public void Generate_ThrowsInvalidRequest_ForAnEmptyPrompt(string prompt)
    {
        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(Shared.Value, Request(prompt)));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.InvalidRequest));
        Assert.That(error.Message, Does.Contain("empty"));
    }

    [Test]
    public void Generate_ThrowsInvalidRequest_ForChatMessagesWithoutText()
    {
        var request = new InferenceRequest { Model = Model, Messages = [new ChatMessage("user", " ")] };

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(Shared.Value, request));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.InvalidRequest));
    }

    [TestCase(0)]
    [TestCase(-1)]
    [TestCase(513)]
    [TestCase(int.MaxValue)]
    public void Generate_ThrowsInvalidRequest_ForMaxTokensOutOfRange(int maxTokens)
    {
        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(Shared.Value, Request("The", maxTokens: maxTokens)));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.InvalidRequest));
        Assert.That(error.Message, Does.Contain("MaxTokens"));
    }

    [TestCase(-0.1)]
    [TestCase(2.01)]
    [TestCase(double.NaN)]
    [TestCase(double.PositiveInfinity)]
    public void Generate_ThrowsInvalidRequest_ForTemperatureOutOfRange(double temperature)
    {
        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(Shared.Value, Request("The", temperature: temperature)));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.InvalidRequest));
    }

    [Test]
    public void Generate_ThrowsInvalidRequest_ForTooManyOrEmptyStopSequences()
    {
        Assert.That(async () => await CollectAsync(Shared.Value, Request("The") with { Stop = ["a", "b", "c", "d", "e"] }),
            Throws.InstanceOf<InferenceException>().With.Property(nameof(InferenceException.Kind)).EqualTo(InferenceErrorKind.InvalidRequest));
        Assert.That(async () => await CollectAsync(Shared.Value, Request("The") with { Stop = [""] }),
            Throws.InstanceOf<InferenceException>().With.Property(nameof(InferenceException.Kind)).EqualTo(InferenceErrorKind.InvalidRequest));
    }

    [Test]
    public void Generate_RejectsAHugePrompt_WithoutReadingIt()
    {
        var huge = new string('a', 4 * 1024 * 1024);

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(Shared.Value, Request(huge)));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.InvalidRequest));
        Assert.That(error.Message, Does.Contain("too long"));
    }

    [Test]
    public void Generate_RejectsAPromptOfMoreWordsThanTheContext()
    {
        var prompt = string.Join(' ', Enumerable.Repeat("rain", 2049));

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(Shared.Value, Request(prompt)));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.InvalidRequest));
    }

    [Test]
    public async Task Generate_ContinuesALongPrompt_WithinTheContext()
    {
        var prompt = string.Join(' ', Enumerable.Repeat("rain", 2000)) + " and then the kettle";

        var tokens = await CollectAsync(Shared.Value, Request(prompt, temperature: 0, maxTokens: 1));

        Assert.That(tokens.Single().Text, Is.EqualTo(" boils"));
    }

    [Test]
    public void Constructor_Throws_ForAMissingCorpusFileOrAnEmptyCorpus()
    {
        var missing = Assert.Throws<EngineConfigurationException>(() => _ = new BuiltinEngine(new BuiltinEngineOptions { CorpusPath = "/nonexistent/corpus.txt" }));
        Assert.That(missing!.Errors, Has.Some.Contains("/nonexistent/corpus.txt"));

        var empty = Assert.Throws<EngineConfigurationException>(() => _ = new BuiltinEngine(new BuiltinEngineOptions { CorpusText = "# only a comment\n\n" }));
        Assert.That(empty!.Errors, Has.Some.Contains("no words"));
    }

    [Test]
    public void Constructor_Throws_ForABadModelList()
    {
        var options = new BuiltinEngineOptions
        {
            CorpusText = "a b c",
            Models = [new BuiltinModelOptions { Name = "x", Order = 9 }, new BuiltinModelOptions { Name = "x", MaxOutputTokens = 0 }],
        };

        var error = Assert.Throws<EngineConfigurationException>(() => _ = new BuiltinEngine(options));

        Assert.That(error!.Errors, Has.Count.EqualTo(3));
    }

    [Test]
    public async Task Generate_WithAUnigramModel_StillProducesText()
    {
        using var engine = new BuiltinEngine(new BuiltinEngineOptions
        {
            CorpusText = "one two three four.",
            StopAtEndOfText = false,
            Models = [new BuiltinModelOptions { Name = "uni", Order = 1 }],
        });

        var tokens = await CollectAsync(engine, Request("one", model: "uni", maxTokens: 10));

        Assert.That(tokens, Has.Count.EqualTo(10));
    }
}
