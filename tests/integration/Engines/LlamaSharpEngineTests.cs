using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Integration.Engines;

/// <summary>
/// The llamasharp engine running llama.cpp's CPU backend on a tiny GGUF model the test writes
/// itself (<see cref="TinyGguf"/>), on real time: the engine's native work runs on its own threads.
/// </summary>
[CancelAfter(60000)]
[NonParallelizable]
public sealed class LlamaSharpEngineTests
{
    private string _directory = null!;
    private string _modelPath = null!;

    [OneTimeSetUp]
    public void WriteModel()
    {
        _directory = Directory.CreateTempSubdirectory("p2p-gguf-").FullName;
        _modelPath = Path.Combine(_directory, "tiny-llama.gguf");
        TinyGguf.Write(_modelPath);
    }

    [OneTimeTearDown]
    public void DeleteModel() => Directory.Delete(_directory, recursive: true);

    private LlamaSharpEngine Engine(Action<LlamaSharpEngineOptions>? configure = null)
    {
        var options = new LlamaSharpEngineOptions { ModelPath = _modelPath, ContextSize = 128, Threads = 1, SeedSource = new Random(7) };
        configure?.Invoke(options);
        return new LlamaSharpEngine(options);
    }

    private static InferenceRequest Request(string prompt = "hello", int maxTokens = 6, IReadOnlyList<string>? stop = null) =>
        new() { Model = "tiny-llama", Prompt = prompt, MaxTokens = maxTokens, Temperature = 0, Stop = stop };

    private static async Task<List<GeneratedToken>> CollectAsync(IInferenceEngine engine, InferenceRequest request, CancellationToken cancellationToken = default)
    {
        var tokens = new List<GeneratedToken>();
        await foreach (var token in engine.GenerateAsync(request, cancellationToken)) tokens.Add(token);
        return tokens;
    }

    [Test]
    public async Task Initialize_LoadsTheModel_AndServesItUnderItsFileName()
    {
        using var engine = Engine();

        await engine.InitializeAsync(CancellationToken.None);

        var model = engine.Models.Single();
        Assert.That(model.Name, Is.EqualTo("tiny-llama"));
        Assert.That(model.ContextLength, Is.EqualTo(128));
        Assert.That(model.MaxOutputTokens, Is.EqualTo(127), "an answer fits the context");
    }

    [Test]
    public async Task Tokenize_SplitsTextIntoTheModelsVocabulary()
    {
        using var engine = Engine();
        await engine.InitializeAsync(CancellationToken.None);

        Assert.That(engine.TokenPieces("hello peer network"), Is.EqualTo(new[] { " hello", " peer", " network" }));
        Assert.That(engine.TokenPieces("hi"), Is.EqualTo(new[] { " h", "i" }), "pieces the vocabulary has no word for");
    }

    [Test]
    public async Task Generate_StreamsTokensOneByOne_UpToMaxTokens()
    {
        using var engine = Engine();

        var tokens = await CollectAsync(engine, Request(maxTokens: 5));

        Assert.That(tokens, Has.Count.EqualTo(5));
        Assert.That(tokens.Select(t => t.Index), Is.EqualTo(Enumerable.Range(0, 5)));
        Assert.That(tokens.Take(4).Select(t => t.FinishReason), Is.All.Null);
        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Length));
        // The model is built to repeat its last token.
        Assert.That(string.Concat(tokens.Select(t => t.Text)), Is.EqualTo(string.Concat(Enumerable.Repeat(" hello", 5))));
    }

    [Test]
    public async Task Generate_IsRepeatable_WithTheSameSeedAndTemperature()
    {
        using var engine = Engine();
        var request = Request(prompt: "peer network token", maxTokens: 8) with { Temperature = 1.5, Seed = 11 };

        var first = await CollectAsync(engine, request);
        var second = await CollectAsync(engine, request);

        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public async Task Generate_EndsBeforeAStopSequence_SplitAcrossTokens()
    {
        using var engine = Engine();

        var tokens = await CollectAsync(engine, Request(maxTokens: 20, stop: ["lo hel"]));

        Assert.That(string.Concat(tokens.Select(t => t.Text)), Is.EqualTo(" hel"));
        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Stop));
    }

    [Test]
    public async Task Generate_EndsWithStop_AtTheModelsEndOfGenerationToken()
    {
        using var engine = Engine();

        // The prompt ends with the end-of-text token, which this model repeats.
        var tokens = await CollectAsync(engine, Request(prompt: "hello</s>", maxTokens: 10));

        Assert.That(tokens, Is.EqualTo(new[] { new GeneratedToken(0, "", FinishReason.Stop, new TokenUsage(3, 0)) }), "no text, the prompt counted");
    }

    [Test]
    public async Task Generate_StopsWorking_WhenCancelled_AndFreesItsSlot()
    {
        using var engine = Engine(o => o.MaxConcurrency = 1);
        using var cts = new CancellationTokenSource();
        var received = new List<GeneratedToken>();

        var error = Assert.CatchAsync<OperationCanceledException>(async () =>
        {
            await foreach (var token in engine.GenerateAsync(Request(maxTokens: 100), cts.Token))
            {
                received.Add(token);
                if (received.Count == 2) await cts.CancelAsync();
            }
        });

        Assert.That(error, Is.Not.Null);
        Assert.That(received, Has.Count.EqualTo(2), "no token after the cancel");
        var next = await CollectAsync(engine, Request(maxTokens: 2));
        Assert.That(next[^1].FinishReason, Is.EqualTo(FinishReason.Length), "the one slot was given back");
    }

    [Test]
    public async Task Generate_WaitsForAFreeSlot_BeyondMaxConcurrency()
    {
        using var engine = Engine(o => o.MaxConcurrency = 1);
        await using var first = engine.GenerateAsync(Request(maxTokens: 50), CancellationToken.None).GetAsyncEnumerator();
        Assert.That(await first.MoveNextAsync(), Is.True, "the first request holds the slot");

        var second = CollectAsync(engine, Request(maxTokens: 3));
        for (var i = 0; i < 10; i++) Assert.That(await first.MoveNextAsync(), Is.True);
        Assert.That(second.IsCompleted, Is.False, "the second request waits while the first one streams");

        await first.DisposeAsync(); // the caller stops reading: the slot is free
        var tokens = await second;
        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Length));
    }

    [Test]
    public async Task Dispose_WhileGenerating_LetsTheGenerationFinish_ThenRefusesNewOnes()
    {
        var engine = Engine();
        await using (var tokens = engine.GenerateAsync(Request(maxTokens: 5), CancellationToken.None).GetAsyncEnumerator())
        {
            Assert.That(await tokens.MoveNextAsync(), Is.True);
            engine.Dispose();
            var rest = 0;
            while (await tokens.MoveNextAsync()) rest++;
            Assert.That(rest, Is.EqualTo(4), "the model stays loaded until the generation in flight ends");
        }

        Assert.That(async () => await CollectAsync(engine, Request()), Throws.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public async Task Generate_RefusesAPromptLongerThanTheContext()
    {
        using var engine = Engine(o => o.ContextSize = 32);
        await engine.InitializeAsync(CancellationToken.None);
        var prompt = string.Join(' ', Enumerable.Repeat("hello", 40));

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request(prompt: prompt, maxTokens: 4)));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.InvalidRequest));
        Assert.That(error.Message, Does.Contain("too long"));
    }

    [Test]
    public async Task Generate_EndsWithLength_WhenTheContextIsFull()
    {
        using var engine = Engine(o => o.ContextSize = 16);
        await engine.InitializeAsync(CancellationToken.None);

        var tokens = await CollectAsync(engine, Request(maxTokens: 15));

        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Length));
        Assert.That(tokens, Has.Count.LessThan(15), "prompt and answer share the 16 tokens");
    }

    [Test]
    public async Task Generate_RefusesAnotherModelName_AndTooManyTokens()
    {
        using var engine = Engine(o => o.MaxOutputTokens = 8);
        await engine.InitializeAsync(CancellationToken.None);

        var wrongModel = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request() with { Model = "llama3" }));
        var tooMany = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request(maxTokens: 9)));

        Assert.That(wrongModel!.Kind, Is.EqualTo(InferenceErrorKind.ModelNotFound));
        Assert.That(tooMany!.Kind, Is.EqualTo(InferenceErrorKind.InvalidRequest));
    }

    [Test]
    public async Task Generate_AppliesTheModelsChatTemplate_ToMessages()
    {
        var path = Path.Combine(_directory, "tiny-chat.gguf");
        // ChatML, which llama.cpp recognises by its markers.
        TinyGguf.Write(path, chatTemplate: "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n");
        using var engine = Engine(o => o.ModelPath = path);

        var tokens = await CollectAsync(engine, new InferenceRequest
        {
            Model = "tiny-chat",
            Messages = [new ChatMessage("system", "Be brief."), new ChatMessage("user", "hello")],
            MaxTokens = 3,
            Temperature = 0,
        });

        Assert.That(tokens[^1].FinishReason, Is.Not.Null);
        Assert.That(tokens, Has.Count.InRange(1, 3));
    }

    [Test]
    public void Initialize_ThrowsEngineUnavailable_ForAFileThatIsNotAModel()
    {
        var path = Path.Combine(_directory, "not-a-model.gguf");
        File.WriteAllText(path, "this is not a GGUF file");
        using var engine = Engine(o => o.ModelPath = path);

        var error = Assert.ThrowsAsync<InferenceException>(() => engine.InitializeAsync(CancellationToken.None));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.EngineUnavailable));
        Assert.That(error.Message, Does.Contain("not-a-model.gguf").And.Contain("invalid magic"), "llama.cpp's own reason is passed on");
    }

    [TestCase(0.5)]
    [TestCase(0.01)]
    public void Initialize_ThrowsEngineUnavailable_ForATruncatedModel(double keep)
    {
        var path = Path.Combine(_directory, $"truncated-{keep}.gguf");
        var bytes = File.ReadAllBytes(_modelPath);
        File.WriteAllBytes(path, bytes[..(int)(bytes.Length * keep)]);
        using var engine = Engine(o => o.ModelPath = path);

        var error = Assert.ThrowsAsync<InferenceException>(() => engine.InitializeAsync(CancellationToken.None));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.EngineUnavailable));
    }

    [Test]
    public void Create_RejectsAMissingModelFile()
    {
        var error = Assert.Throws<EngineConfigurationException>(() => Engine(o => o.ModelPath = Path.Combine(_directory, "missing.gguf")));

        Assert.That(error!.Errors, Has.Some.Contains("missing.gguf").And.Contains("does not exist"));
    }
}
