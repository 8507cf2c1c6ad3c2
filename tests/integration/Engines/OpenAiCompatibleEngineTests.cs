using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Integration.Engines;

/// <summary>The OpenAI-compatible engine over real HTTP on loopback, against canned server answers.</summary>
[CancelAfter(10000)]
public sealed class OpenAiCompatibleEngineTests
{
    private FakeOpenAiServer _server = null!;

    [SetUp]
    public void StartServer() => _server = new FakeOpenAiServer();

    [TearDown]
    public async Task StopServer() => await _server.DisposeAsync();

    private OpenAiCompatibleEngine Engine(Action<OpenAiCompatibleEngineOptions>? configure = null)
    {
        var options = new OpenAiCompatibleEngineOptions { BaseUrl = _server.BaseUrl, Models = ["mock-llama"] };
        configure?.Invoke(options);
        return new OpenAiCompatibleEngine(options);
    }

    private static InferenceRequest Request(string model = "mock-llama") =>
        new() { Model = model, Prompt = "How do peers meet?", MaxTokens = 32, Temperature = 0.2, Seed = 5, Stop = ["\n\n"] };

    private static async Task<List<GeneratedToken>> CollectAsync(IInferenceEngine engine, InferenceRequest request, CancellationToken cancellationToken = default)
    {
        var tokens = new List<GeneratedToken>();
        await foreach (var token in engine.GenerateAsync(request, cancellationToken)) tokens.Add(token);
        return tokens;
    }

    [Test]
    public async Task Generate_StreamsTheServersTokens_InOrder()
    {
        using var engine = Engine(o => o.ApiKey = "sk-test");

        var tokens = await CollectAsync(engine, Request());

        Assert.That(tokens.Select(t => t.Text), Is.EqualTo(new[] { "Peers", " find", " each", " other", ".", "" }));
        Assert.That(tokens.Select(t => t.Index), Is.EqualTo(Enumerable.Range(0, 6)));
        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Stop));
    }

    [Test]
    public async Task Generate_PostsAStreamingChatCompletion()
    {
        using var engine = Engine(o => o.ApiKey = "sk-test");

        await CollectAsync(engine, Request());

        var request = await _server.FirstRequest;
        Assert.That(request.Method, Is.EqualTo("POST"));
        Assert.That(request.Path, Is.EqualTo("/v1/chat/completions"));
        Assert.That(request.Headers["Authorization"], Is.EqualTo("Bearer sk-test"));
        using var body = JsonDocument.Parse(request.Body);
        Assert.That(body.RootElement.GetProperty("stream").GetBoolean(), Is.True);
        Assert.That(body.RootElement.GetProperty("model").GetString(), Is.EqualTo("mock-llama"));
        Assert.That(body.RootElement.GetProperty("max_tokens").GetInt32(), Is.EqualTo(32));
        Assert.That(body.RootElement.GetProperty("seed").GetInt32(), Is.EqualTo(5));
        Assert.That(body.RootElement.GetProperty("messages")[0].GetProperty("content").GetString(), Is.EqualTo("How do peers meet?"));
    }

    [Test]
    public async Task Generate_ReportsLength_WhenTheServerStoppedAtMaxTokens()
    {
        _server.Handler = FakeOpenAiServer.File(200, "chat-stream-length.sse");
        using var engine = Engine();

        var tokens = await CollectAsync(engine, Request());

        Assert.That(string.Concat(tokens.Select(t => t.Text)), Is.EqualTo("The rain"));
        Assert.That(tokens[^1].FinishReason, Is.EqualTo(FinishReason.Length));
    }

    [Test]
    public async Task Generate_UnderstandsANonStreamedAnswer()
    {
        _server.Handler = FakeOpenAiServer.File(200, "chat-completion.json");
        using var engine = Engine();

        var tokens = await CollectAsync(engine, Request());

        Assert.That(tokens, Is.EqualTo(new[] { new GeneratedToken(0, "Peers find each other through the DHT.", FinishReason.Stop, new TokenUsage(9, 8)) }), "the text and the server's usage");
    }

    [Test]
    public async Task Initialize_ListsTheServersModels_WhenNoneAreConfigured()
    {
        _server.Handler = FakeOpenAiServer.File(200, "models.json");
        using var engine = Engine(o => o.Models = []);

        await engine.InitializeAsync(CancellationToken.None);

        Assert.That(engine.Models.Select(m => m.Name), Is.EqualTo(new[] { "mock-llama", "mock-qwen" }));
        Assert.That((await _server.FirstRequest).Path, Is.EqualTo("/v1/models"));
    }

    [Test]
    public void Models_DescribeTheServerWithoutItsUrlOrCredentials()
    {
        using var engine = Engine(o => o.BaseUrl = new UriBuilder(_server.BaseUrl) { UserName = "admin", Password = "hunter2" }.Uri);

        // Model descriptions reach unauthenticated callers through the gateway's model list.
        Assert.That(engine.Models.Select(m => m.Description),
            Has.All.Not.Contain("hunter2").And.All.Not.Contain(_server.BaseUrl.Authority).And.All.Contain("OpenAI-compatible"));
    }

    [Test]
    public void Generate_ThrowsModelNotFound_WithoutAskingTheServer_ForAModelItDoesNotServe()
    {
        using var engine = Engine();

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request("gpt-99")));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.ModelNotFound));
        Assert.That(_server.Requests, Is.Empty);
    }

    [Test]
    public void Generate_ThrowsModelNotFound_WhenTheServerAnswers404()
    {
        _server.Handler = FakeOpenAiServer.File(404, "error-404-model.json");
        using var engine = Engine(o => o.Models = []);

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request("no-such-model")));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.ModelNotFound));
        Assert.That(error.StatusCode, Is.EqualTo(404));
        Assert.That(error.Message, Does.Contain("does not exist"));
    }

    [Test]
    public void Generate_ThrowsEngineUnavailable_WithTheStatus_OnA500()
    {
        _server.Handler = FakeOpenAiServer.File(500, "error-500.json");
        using var engine = Engine();

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.EngineUnavailable));
        Assert.That(error.StatusCode, Is.EqualTo(500));
        Assert.That(error.Message, Does.Contain("the backend crashed"));
    }

    [Test]
    public void Generate_ThrowsRateLimited_WithRetryAfter_OnA429()
    {
        _server.Handler = FakeOpenAiServer.File(429, "error-429.json", ("Retry-After", "7"));
        using var engine = Engine();

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.RateLimited));
        Assert.That(error.StatusCode, Is.EqualTo(429));
        Assert.That(error.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(7)));
        Assert.That(error.Message, Does.Contain("Rate limit reached"));
    }

    [Test]
    public void Initialize_ThrowsEngineUnavailable_OnA500()
    {
        _server.Handler = FakeOpenAiServer.File(500, "error-500.json");
        using var engine = Engine(o => o.Models = []);

        var error = Assert.ThrowsAsync<InferenceException>(() => engine.InitializeAsync(CancellationToken.None));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.EngineUnavailable));
    }

    [Test]
    public async Task Generate_ThrowsMalformedResponse_AfterTheGoodTokens_ForBrokenJsonInTheStream()
    {
        _server.Handler = FakeOpenAiServer.File(200, "chat-stream-malformed.sse");
        using var engine = Engine();
        var received = new List<GeneratedToken>();

        var error = Assert.ThrowsAsync<InferenceException>(async () =>
        {
            await foreach (var token in engine.GenerateAsync(Request(), CancellationToken.None)) received.Add(token);
        });

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
        Assert.That(received.Select(t => t.Text), Is.EqualTo(new[] { "Hello" }));
        // The engine stays usable for the next request.
        _server.Handler = FakeOpenAiServer.File(200, "chat-stream.sse");
        Assert.That((await CollectAsync(engine, Request()))[^1].FinishReason, Is.EqualTo(FinishReason.Stop));
    }

    [Test]
    public void Generate_ThrowsMalformedResponse_WhenTheStreamEndsEarly()
    {
        _server.Handler = FakeOpenAiServer.File(200, "chat-stream-truncated.sse");
        using var engine = Engine();

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
        Assert.That(error.Message, Does.Contain("[DONE]"));
    }

    [Test]
    public void Generate_ThrowsEngineError_WhenTheServerReportsAnErrorMidStream()
    {
        _server.Handler = FakeOpenAiServer.File(200, "chat-stream-error.sse");
        using var engine = Engine();

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.EngineError));
        Assert.That(error.Message, Does.Contain("ran out of memory"));
    }

    [Test]
    public void Generate_ThrowsMalformedResponse_ForAnEndlessLine_AndHangsUp()
    {
        _server.Handler = FakeOpenAiServer.EndlessLine();
        using var engine = Engine(o => o.MaxResponseBytes = 64 * 1024);

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    [Test]
    public void Generate_ThrowsEngineUnavailable_WhenNothingListens()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        using var engine = new OpenAiCompatibleEngine(new OpenAiCompatibleEngineOptions
        {
            BaseUrl = new Uri($"http://127.0.0.1:{port}"),
            Models = ["mock-llama"],
        });

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.EngineUnavailable));
        Assert.That(error.StatusCode, Is.Null);
    }

    [Test]
    public void Errors_NeverShowTheBaseUrlsCredentials_WhenNothingListens()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        using var engine = new OpenAiCompatibleEngine(new OpenAiCompatibleEngineOptions
        {
            BaseUrl = new Uri($"http://alice:s3cret@127.0.0.1:{port}/v1"),
        });

        var listing = Assert.ThrowsAsync<InferenceException>(() => engine.InitializeAsync(CancellationToken.None));
        var generation = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(listing!.Kind, Is.EqualTo(InferenceErrorKind.EngineUnavailable));
        Assert.That(generation!.Kind, Is.EqualTo(InferenceErrorKind.EngineUnavailable));
        foreach (var error in new[] { listing, generation })
        {
            Assert.That(error.ToString(), Does.Not.Contain("s3cret").And.Not.Contain("alice"));
            Assert.That(error.Message, Does.Contain($"127.0.0.1:{port}"));
        }
    }

    [Test]
    public async Task Generate_AbortsTheHttpRequest_WhenCancelledMidStream()
    {
        _server.Handler = _server.HangAfterFirstEvent("chat-stream-length.sse");
        using var engine = Engine();
        using var cts = new CancellationTokenSource();
        await using var tokens = engine.GenerateAsync(Request(), cts.Token).GetAsyncEnumerator();

        Assert.That(await tokens.MoveNextAsync(), Is.True);
        Assert.That(tokens.Current.Text, Is.EqualTo("The"), "the first token arrived while the server still holds the stream");
        var next = tokens.MoveNextAsync();
        await cts.CancelAsync();

        Assert.That(async () => await next, Throws.InstanceOf<OperationCanceledException>());
        await _server.ClientAborted; // the server saw the connection go: cancellation reached the engine
    }

    [Test]
    public async Task Generate_AbortsTheHttpRequest_WhenCancelledBeforeTheServerAnswers()
    {
        _server.Handler = _server.HangBeforeHeaders();
        using var engine = Engine();
        using var cts = new CancellationTokenSource();

        var generation = CollectAsync(engine, Request(), cts.Token);
        await _server.FirstRequest;
        await cts.CancelAsync();

        Assert.That(async () => await generation, Throws.InstanceOf<OperationCanceledException>());
        await _server.ClientAborted;
    }

    [Test]
    public async Task Generate_ThrowsTimeout_WhenTheServerStaysSilent_OnTheInjectedClock()
    {
        _server.Handler = _server.HangBeforeHeaders();
        // Real HTTP cannot run on the simulation executor; Advance fires the engine's timeout timer synchronously.
        var time = new FakeTimeProvider();
        using var engine = Engine(o =>
        {
            o.Timeout = TimeSpan.FromSeconds(30);
            o.TimeProvider = time;
        });

        var generation = CollectAsync(engine, Request());
        await _server.FirstRequest;
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.That(generation.IsCompleted, Is.False, "not before the timeout");
        time.Advance(TimeSpan.FromSeconds(1));

        var error = Assert.ThrowsAsync<InferenceException>(() => generation);
        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.Timeout));
        await _server.ClientAborted;
    }

    [Test]
    public async Task FactoryEngine_FromConfiguration_TalksToTheServer()
    {
        using var engine = InferenceEngineFactory.Create(new EngineOptions { Kind = "openai", BaseUrl = _server.BaseUrl + "v1" });
        _server.Handler = FakeOpenAiServer.File(200, "models.json");
        await engine.InitializeAsync(CancellationToken.None);
        _server.Handler = FakeOpenAiServer.File(200, "chat-stream.sse");

        var tokens = await CollectAsync(engine, Request());

        Assert.That(string.Concat(tokens.Select(t => t.Text)), Is.EqualTo("Peers find each other."));
        Assert.That(_server.Requests.Select(r => r.Path), Is.EqualTo(new[] { "/v1/models", "/v1/chat/completions" }));
    }
}
