using System.Net;
using System.Net.Http.Headers;

using System.Text.Json;
using P2PInference.TestKit;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Unit.Engines;

/// <summary>
/// The openai engine's requests and its reading of answers, through the SDK, on an in-memory HTTP
/// handler (no sockets): what it sends, and that any bytes a server sends end as tokens or a typed error.
/// </summary>
[CancelAfter(10000)]
public sealed class OpenAiMessageTests
{
    private static OpenAiCompatibleEngine Engine(CannedHandler handler, string baseUrl = "http://127.0.0.1:11434", int maxResponseBytes = 4096) =>
        new(new OpenAiCompatibleEngineOptions
        {
            BaseUrl = new Uri(baseUrl),
            Models = ["llama3"],
            HttpMessageHandler = handler,
            MaxResponseBytes = maxResponseBytes,
        });

    private static InferenceRequest Request() => new() { Model = "llama3", Prompt = "Hello", MaxTokens = 8 };

    /// <summary>The SDK's first request compiles a lot of code; paid once here rather than by whichever test runs first.</summary>
    [OneTimeSetUp]
    public async Task WarmUp()
    {
        using var engine = Engine(CannedHandler.EventStream(Sse(Chunk("Hi", "stop"), "[DONE]")));
        await CollectAsync(engine, Request());
        using var failing = Engine(CannedHandler.Json(HttpStatusCode.InternalServerError, "{}"));
        Assert.That(async () => await CollectAsync(failing, Request()), Throws.InstanceOf<InferenceException>());
    }

    private static async Task<List<GeneratedToken>> CollectAsync(IInferenceEngine engine, InferenceRequest request)
    {
        var tokens = new List<GeneratedToken>();
        await foreach (var token in engine.GenerateAsync(request, CancellationToken.None)) tokens.Add(token);
        return tokens;
    }

    private static string Sse(params string[] events) => string.Concat(events.Select(e => "data: " + e + "\n\n"));

    private static string Chunk(string? content, string? finish = null) =>
        "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama3\",\"choices\":[{\"index\":0,\"delta\":"
        + (content is null ? "{}" : JsonSerializer.Serialize(new { content })) + ",\"finish_reason\":"
        + (finish is null ? "null" : "\"" + finish + "\"") + "}]}";

    [Test]
    public async Task ChatRequest_CarriesTheRequest_InOpenAiShape()
    {
        var handler = CannedHandler.EventStream(Sse(Chunk("Hi", "stop"), "[DONE]"));
        using var engine = Engine(handler);

        await CollectAsync(engine, new InferenceRequest
        {
            Model = "llama3",
            Messages = [new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi \"there\"")],
            MaxTokens = 12,
            Temperature = 0.5,
            Seed = 42,
            Stop = ["\n\n"],
        });

        using var json = JsonDocument.Parse(handler.Bodies.Single());
        var root = json.RootElement;
        Assert.That(handler.Paths.Single(), Is.EqualTo("/v1/chat/completions"));
        Assert.That(root.GetProperty("model").GetString(), Is.EqualTo("llama3"));
        Assert.That(root.GetProperty("stream").GetBoolean(), Is.True);
        Assert.That(root.GetProperty("max_tokens").GetInt32(), Is.EqualTo(12), "the legacy name llama.cpp and Ollama read");
        Assert.That(root.GetProperty("max_completion_tokens").GetInt32(), Is.EqualTo(12));
        Assert.That(root.GetProperty("temperature").GetDouble(), Is.EqualTo(0.5));
        Assert.That(root.GetProperty("seed").GetInt32(), Is.EqualTo(42));
        Assert.That(root.GetProperty("stop")[0].GetString(), Is.EqualTo("\n\n"));
        Assert.That(root.GetProperty("messages")[0].GetProperty("role").GetString(), Is.EqualTo("system"));
        Assert.That(root.GetProperty("messages")[1].GetProperty("content").GetString(), Is.EqualTo("Hi \"there\""));
    }

    [Test]
    public async Task ChatRequest_SendsAPromptAsOneUserMessage_AndOmitsUnsetFields()
    {
        var handler = CannedHandler.EventStream(Sse(Chunk("Hi", "stop"), "[DONE]"));
        using var engine = Engine(handler);

        await CollectAsync(engine, Request());

        using var json = JsonDocument.Parse(handler.Bodies.Single());
        Assert.That(json.RootElement.GetProperty("messages").GetArrayLength(), Is.EqualTo(1));
        Assert.That(json.RootElement.GetProperty("messages")[0].GetProperty("role").GetString(), Is.EqualTo("user"));
        Assert.That(json.RootElement.TryGetProperty("seed", out _), Is.False);
        Assert.That(json.RootElement.TryGetProperty("stop", out _), Is.False);
        Assert.That(handler.Authorizations.Single(), Is.Null, "no key configured: no Authorization header");
    }

    [Test]
    public async Task Stream_YieldsContentInOrder_AndEndsWithTheFinishReason()
    {
        using var engine = Engine(CannedHandler.EventStream(
            ": keep-alive\n\n" + Sse(Chunk(""), Chunk("Hel"), Chunk("lo"), Chunk(null, "length"), "[DONE]")));

        var tokens = await CollectAsync(engine, Request());

        Assert.That(tokens, Is.EqualTo(new[] { new GeneratedToken(0, "Hel"), new GeneratedToken(1, "lo"), new GeneratedToken(2, "", FinishReason.Length) }));
    }

    [Test]
    public async Task NonStreamedAnswer_BecomesOneFinalToken()
    {
        using var engine = Engine(CannedHandler.Json(HttpStatusCode.OK,
            "{\"id\":\"c\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"llama3\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello there.\"},\"finish_reason\":\"length\"}]}"));

        var tokens = await CollectAsync(engine, Request());

        Assert.That(tokens, Is.EqualTo(new[] { new GeneratedToken(0, "Hello there.", FinishReason.Length) }));
    }

    [TestCase("not json")]
    [TestCase("{\"choices\":")]
    [TestCase("[1,2]")]
    [TestCase("{\"choices\":\"nope\"}")]
    [TestCase("{\"choices\":[7]}")]
    [TestCase("{\"choices\":[{\"delta\":{\"content\":5}}]}")]
    [TestCase("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"sideways\"}]}")]
    public void Stream_ThrowsMalformedResponse_ForAnEventThatIsNotAChunk(string data)
    {
        using var engine = Engine(CannedHandler.EventStream(Sse(Chunk("ok"), data, "[DONE]")));

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    [Test]
    public void Stream_ThrowsEngineError_WhenTheServerReportsAnErrorMidStream()
    {
        using var engine = Engine(CannedHandler.EventStream(Sse(Chunk("ok"), "{\"error\":{\"message\":\"out of memory\"}}", "[DONE]")));

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.EngineError));
        Assert.That(error.Message, Does.Contain("out of memory"));
    }

    [Test]
    public void Stream_ThrowsMalformedResponse_WhenItEndsWithoutAFinishReason()
    {
        using var engine = Engine(CannedHandler.EventStream(Sse(Chunk("Half"))));

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    [Test]
    public void Stream_ThrowsMalformedResponse_ForALineLongerThanTheBound()
    {
        using var engine = Engine(CannedHandler.EventStream("data: " + new string('x', 10_000)), maxResponseBytes: 2048);

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    [Test]
    public void Stream_ThrowsMalformedResponse_WhenTheServerSendsFarMoreThanMaxTokens()
    {
        var events = Enumerable.Range(0, 100).Select(_ => Chunk("x")).Append(Chunk(null, "stop")).Append("[DONE]").ToArray();
        using var engine = Engine(CannedHandler.EventStream(Sse(events)), maxResponseBytes: 1024 * 1024);

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    [TestCase(HttpStatusCode.BadRequest, InferenceErrorKind.InvalidRequest)]
    [TestCase(HttpStatusCode.Unauthorized, InferenceErrorKind.Unauthorized)]
    [TestCase(HttpStatusCode.Forbidden, InferenceErrorKind.Unauthorized)]
    [TestCase(HttpStatusCode.NotFound, InferenceErrorKind.ModelNotFound)]
    [TestCase(HttpStatusCode.TooManyRequests, InferenceErrorKind.RateLimited)]
    [TestCase(HttpStatusCode.GatewayTimeout, InferenceErrorKind.Timeout)]
    [TestCase(HttpStatusCode.ServiceUnavailable, InferenceErrorKind.EngineUnavailable)]
    [TestCase(HttpStatusCode.Conflict, InferenceErrorKind.EngineError)]
    public void ErrorStatus_BecomesATypedError_WithTheServersMessage(HttpStatusCode status, InferenceErrorKind kind)
    {
        using var engine = Engine(CannedHandler.Json(status, "{\"error\":{\"message\":\"told you so\",\"type\":\"x\"}}"));

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(kind));
        Assert.That(error.StatusCode, Is.EqualTo((int)status));
        Assert.That(error.Message, Does.Contain("told you so"));
        Assert.That(error.Message, Does.Not.Contain("Headers"), "the SDK's message lists headers; ours does not");
    }

    [Test]
    public void ErrorBody_LargerThanTheBound_IsStillATypedError()
    {
        using var engine = Engine(CannedHandler.Json(HttpStatusCode.InternalServerError, new string('e', 10_000)), maxResponseBytes: 2048);

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.AnyOf(InferenceErrorKind.MalformedResponse, InferenceErrorKind.EngineUnavailable));
    }

    [Test]
    public async Task CredentialsInTheBaseUrl_AreSentAsBasicAuth_AndNeverShown()
    {
        var handler = CannedHandler.Json(HttpStatusCode.InternalServerError, "{\"error\":\"boom\"}");
        using var engine = Engine(handler, baseUrl: "http://alice:s3cret@127.0.0.1:11434/v1");

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(handler.Authorizations.Single(), Is.EqualTo("Basic " + Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes("alice:s3cret"))));
        Assert.That(handler.Uris.Single().UserInfo, Is.Empty, "the request line carries no credentials");
        Assert.That(error!.ToString(), Does.Not.Contain("s3cret"));
        Assert.That(engine.BaseUrl.ToString(), Does.Not.Contain("s3cret").And.Not.Contain("alice"));
        Assert.That(engine.Models.Single().Description, Does.Not.Contain("s3cret").And.Not.Contain("127.0.0.1"), "callers see no model server address");
        await Task.CompletedTask;
    }

    [Test]
    public void ConfigurationError_DoesNotRepeatCredentials()
    {
        var errors = OpenAiCompatibleEngine.Validate(new OpenAiCompatibleEngineOptions { BaseUrl = new Uri("ftp://bob:hunter2@example.org/") });

        Assert.That(errors.Single(), Does.Contain("ftp://example.org/").And.Not.Contain("hunter2"));
    }

    [Test]
    public async Task RandomEventData_EndsInTokensOrATypedError()
    {
        var random = TestSeed.CreateRandom();
        const string alphabet = "{}[]\":,choicesdeltacontentfinish_reasonstoplength0123 nulltrue\n";
        var handler = CannedHandler.EventStream(string.Empty);
        using var engine = Engine(handler);
        for (var round = 0; round < 60; round++)
        {
            var chars = new char[random.Next(0, 120)];
            for (var i = 0; i < chars.Length; i++) chars[i] = alphabet[random.Next(alphabet.Length)];
            handler.Body = Sse(new string(chars), "[DONE]");
            try
            {
                await CollectAsync(engine, Request());
            }
            catch (InferenceException e)
            {
                Assert.That(e.Kind, Is.AnyOf(InferenceErrorKind.MalformedResponse, InferenceErrorKind.EngineError), new string(chars));
            }
        }
    }

    [Test]
    public void NonStreamedAnswer_ThatIsNotJson_IsMalformed()
    {
        Assert.That(System.Text.Encoding.UTF8.GetString(OpenAiResponseGuard.AsEventStream("{\"x\n\":"u8.ToArray())), Does.StartWith("data: {\"x \":\n\n"));
        using var engine = Engine(CannedHandler.Json(HttpStatusCode.OK, "<html>oops</html>"));

        var error = Assert.ThrowsAsync<InferenceException>(() => CollectAsync(engine, Request()));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    /// <summary>Answers every request with one canned response and records what was asked.</summary>
    private sealed class CannedHandler(HttpStatusCode status, string mediaType, string body) : HttpMessageHandler
    {
        public string Body { get; set; } = body;

        public List<string> Bodies { get; } = [];
        public List<string> Paths { get; } = [];
        public List<Uri> Uris { get; } = [];
        public List<string?> Authorizations { get; } = [];

        public static CannedHandler EventStream(string body) => new(HttpStatusCode.OK, "text/event-stream", body);

        public static CannedHandler Json(HttpStatusCode status, string body) => new(status, "application/json", body);

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Uris.Add(request.RequestUri!);
            Paths.Add(request.RequestUri!.AbsolutePath);
            Authorizations.Add(request.Headers.Authorization?.ToString());
            Bodies.Add(request.Content is null ? string.Empty : await request.Content.ReadAsStringAsync(cancellationToken));
            // A network-like body: not seekable, read as it comes.
            var content = new StreamContent(new NonSeekableStream(System.Text.Encoding.UTF8.GetBytes(Body)));
            content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
            return new HttpResponseMessage(status) { Content = content, RequestMessage = request };
        }
    }

    private sealed class NonSeekableStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
    }
}
