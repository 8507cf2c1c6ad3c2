using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Client;
using P2PInference.Workers.Client.OpenAi;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Client.OpenAi;

/// <summary>
/// The handlers of `client serve` on an in-memory HTTP context (no sockets) in front of the SDK and
/// a fake gateway: what goes over the network for an HTTP request, and the bytes that come back.
/// </summary>
[TestFixture]
public sealed class OpenAiApiTests
{
    [Test]
    public void Stream_IsDataEvents_EachAJsonChunk_EndingInDone() => GatewaySimulation.Run(async g =>
    {
        var context = await SendAsync(g.Client(), "/v1/chat/completions",
            """{"model":"m","stream":true,"messages":[{"role":"user","content":"one two"}]}""");

        var body = BodyOf(context);
        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(200));
            Assert.That(context.Response.ContentType, Does.StartWith("text/event-stream"));
            Assert.That(body, Does.EndWith("\n\ndata: [DONE]\n\n"));
            var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
            Assert.That(events, Has.Length.EqualTo(3), "two chunks and [DONE]");
            Assert.That(events, Is.All.StartWith("data: "));
            Assert.That(string.Concat(events[..^1].Select(e => (string?)JsonNode.Parse(e["data: ".Length..])!["choices"]![0]!["delta"]!["content"])),
                Is.EqualTo("one two"));
        });
    });

    [Test]
    public void ABearerKey_IsSentAsTheApiKey_AndWithoutOneTheClientsOwnCredentialIs() => GatewaySimulation.Run(async g =>
    {
        var client = g.Client();
        await SendAsync(client, "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}]}""", bearer: "sk-from-header");
        await SendAsync(client, "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}]}""");

        var credentials = g.Gateway.CallsOf(WorkerMethods.Gateway.Infer).Select(c => c.Authorization);
        Assert.That(credentials, Is.EqualTo(new[] { "ApiKey sk-from-header", "ApiKey " + FakeGateway.ApiKey }));
    });

    [Test]
    public void NoCredentialAtAll_Is401_WithoutReachingTheGateway() => GatewaySimulation.Run(async g =>
    {
        var context = await SendAsync(g.Client(new ClientOptions()), "/v1/completions", """{"prompt":"hi"}""");

        var json = JsonNode.Parse(BodyOf(context))!;
        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(401));
            Assert.That((string?)json["error"]!["type"], Is.EqualTo("authentication_error"));
            Assert.That(g.Gateway.CallsOf(WorkerMethods.Gateway.Infer), Is.Empty);
        });
    });

    [Test]
    public void AFailureBeforeTheFirstChunk_IsAnHttpError_WithRetryAfter() => GatewaySimulation.Run(async g =>
    {
        g.Gateway.HandleStream(WorkerMethods.Gateway.InferStream, (_, _) => Fail(chunksFirst: 0));

        var context = await SendAsync(g.Client(), "/v1/chat/completions", """{"stream":true,"messages":[{"role":"user","content":"hi"}]}""");

        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(429));
            Assert.That(context.Response.Headers.RetryAfter.ToString(), Is.EqualTo("3"));
            Assert.That((string?)JsonNode.Parse(BodyOf(context))!["error"]!["code"], Is.EqualTo("rate_limit_exceeded"));
        });
    });

    [Test]
    public void AFailureMidStream_IsTheLastEvent_AnErrorWithoutDone() => GatewaySimulation.Run(async g =>
    {
        g.Gateway.HandleStream(WorkerMethods.Gateway.InferStream, (_, _) => Fail(chunksFirst: 1));

        var context = await SendAsync(g.Client(), "/v1/chat/completions", """{"stream":true,"messages":[{"role":"user","content":"hi"}]}""");

        var events = BodyOf(context).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(200), "the status was sent with the first chunk");
            Assert.That(events, Has.Length.EqualTo(2));
            Assert.That((string?)JsonNode.Parse(events[1]["data: ".Length..])!["error"]!["type"], Is.EqualTo("rate_limit_error"));
            Assert.That(events, Has.None.Contains("[DONE]"));
        });
    });

    [Test]
    public void ABodyThatIsNotJson_Is400() => GatewaySimulation.Run(async g =>
    {
        var context = await SendAsync(g.Client(), "/v1/chat/completions", "{\"messages\":");

        Assert.That(context.Response.StatusCode, Is.EqualTo(400));
        Assert.That((string?)JsonNode.Parse(BodyOf(context))!["error"]!["type"], Is.EqualTo("invalid_request_error"));
    });

    [Test]
    public void ATextPlainPost_Is415_AndNothingGoesOverTheNetwork() => GatewaySimulation.Run(async g =>
    {
        // What a web page can send cross-site without a CORS preflight.
        var context = await SendAsync(g.Client(), "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}]}""",
            contentType: "text/plain;charset=UTF-8");

        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(415));
            Assert.That((string?)JsonNode.Parse(BodyOf(context))!["error"]!["code"], Is.EqualTo("unsupported_media_type"));
            Assert.That(g.Gateway.Calls, Is.Empty);
        });
    });

    [Test]
    public void APostWithoutContentType_Is415() => GatewaySimulation.Run(async g =>
    {
        var context = await SendAsync(g.Client(), "/v1/completions", """{"prompt":"hi"}""", contentType: null);

        Assert.That(context.Response.StatusCode, Is.EqualTo(415));
        Assert.That(g.Gateway.Calls, Is.Empty);
    });

    [TestCase("https://evil.example")]
    [TestCase("null")]
    [TestCase("http://127.0.0.1:9999")]
    public void ARequestFromAnotherOrigin_Is403_AndNothingGoesOverTheNetwork(string origin) => GatewaySimulation.Run(async g =>
    {
        var context = await SendAsync(g.Client(), "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}]}""", origin: origin);

        var error = JsonNode.Parse(BodyOf(context))!["error"]!;
        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(403));
            Assert.That((string?)error["code"], Is.EqualTo("cross_origin_refused"));
            Assert.That((string?)error["message"], Does.Contain("cross-origin requests are refused"));
            Assert.That(g.Gateway.Calls, Is.Empty);
        });
    });

    [TestCase("evil.example:8080")]
    [TestCase("evil.example")]
    [TestCase("127.0.0.1:9999")]
    [TestCase("10.0.0.5:8080")]
    [TestCase("1:8080")]
    public void ARequestForAnotherHost_Is403_ForModelsToo(string host) => GatewaySimulation.Run(async g =>
    {
        // DNS rebinding: the page's own name resolves to 127.0.0.1, and the browser sends that name.
        var api = new OpenAiApi(g.Client(), g.Client().Options.TimeProvider, NullLogger.Instance, new OpenAiGuard(System.Net.IPAddress.Loopback));
        var chat = await SendAsync(api, "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}]}""", host: host);
        var models = await SendAsync(api, "/v1/models", body: null, host: host);

        Assert.Multiple(() =>
        {
            Assert.That(chat.Response.StatusCode, Is.EqualTo(403));
            Assert.That((string?)JsonNode.Parse(BodyOf(chat))!["error"]!["code"], Is.EqualTo("host_not_allowed"));
            Assert.That(models.Response.StatusCode, Is.EqualTo(403));
            Assert.That(g.Gateway.Calls, Is.Empty);
        });
    });

    [TestCase("127.0.0.1:8080", null)]
    [TestCase("localhost:8080", "http://localhost:8080")]
    [TestCase("[::1]:8080", "http://127.0.0.1:8080")]
    public void ALocalRequest_WithJsonAndACharset_IsAnswered(string host, string? origin) => GatewaySimulation.Run(async g =>
    {
        var context = await SendAsync(g.Client(), "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}]}""",
            contentType: "application/json; charset=utf-8", host: host, origin: origin);

        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(200), BodyOf(context));
            Assert.That(g.Gateway.CallsOf(WorkerMethods.Gateway.Infer), Has.Length.EqualTo(1));
        });
    });

    [Test]
    public void ServingOnEveryAddress_AcceptsAnIpHost_ButNoOtherName() => GatewaySimulation.Run(async g =>
    {
        var api = new OpenAiApi(g.Client(), g.Client().Options.TimeProvider, NullLogger.Instance, new OpenAiGuard(System.Net.IPAddress.Any));
        var byAddress = await SendAsync(api, "/v1/completions", """{"prompt":"hi"}""", host: "192.168.1.20:8080");
        var byName = await SendAsync(api, "/v1/completions", """{"prompt":"hi"}""", host: "evil.example:8080");

        Assert.That(byAddress.Response.StatusCode, Is.EqualTo(200), BodyOf(byAddress));
        Assert.That(byName.Response.StatusCode, Is.EqualTo(403));
    });

    [Test]
    public void AnUnexpectedException_IsAFixedTextWithTheRequestId_NotItsMessage() => GatewaySimulation.Run(async g =>
    {
        // The first write of the answer fails with a message naming local state; the error answer then goes out.
        var body = new FailingOnceStream(new InvalidOperationException("secret /home/user/.p2pinference/profile.json"));

        var context = await SendAsync(g.Client(), "/v1/completions", """{"prompt":"hi"}""", responseBody: body);

        var error = JsonNode.Parse(System.Text.Encoding.UTF8.GetString(body.ToArray()))!["error"]!;
        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(500));
            Assert.That((string?)error["message"], Does.Not.Contain("secret"));
            Assert.That((string?)error["message"], Is.EqualTo($"internal error (request {context.TraceIdentifier})"));
        });
    });

    [Test]
    public void AnArgumentExceptionFromBelowOurValidation_Is400WithAFixedTextAndTheRequestId_NotItsMessage() => GatewaySimulation.Run(async g =>
    {
        // A library refusing a value says which and where; none of that is the caller's to read.
        var body = new FailingOnceStream(new ArgumentException("secret value 'sk-live-123' at /home/user/.p2pinference/profile.json", "apiKey"));

        var context = await SendAsync(g.Client(), "/v1/completions", """{"prompt":"hi"}""", responseBody: body);

        var error = JsonNode.Parse(System.Text.Encoding.UTF8.GetString(body.ToArray()))!["error"]!;
        Assert.Multiple(() =>
        {
            Assert.That(context.Response.StatusCode, Is.EqualTo(400));
            Assert.That((string?)error["type"], Is.EqualTo("invalid_request_error"));
            Assert.That((string?)error["message"], Does.Not.Contain("secret").And.Not.Contain("sk-live").And.Not.Contain("/home"));
            Assert.That((string?)error["message"], Does.Contain($"request {context.TraceIdentifier}"));
        });
    });

    [Test]
    public void OurOwnValidationError_KeepsItsMessage() => GatewaySimulation.Run(async g =>
    {
        var context = await SendAsync(g.Client(), "/v1/chat/completions", """{"n":2,"messages":[{"role":"user","content":"hi"}]}""");

        Assert.That(context.Response.StatusCode, Is.EqualTo(400));
        Assert.That((string?)JsonNode.Parse(BodyOf(context))!["error"]!["message"], Is.EqualTo("only n = 1 is supported"));
    });

    /// <summary>A response body whose first write fails with an exception that is not the network's.</summary>
    private sealed class FailingOnceStream(Exception failure) : MemoryStream
    {
        private bool _failed;

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_failed) return base.WriteAsync(buffer, cancellationToken);
            _failed = true;
            throw failure;
        }
    }

    private static async IAsyncEnumerable<InferChunk> Fail(int chunksFirst, [EnumeratorCancellation] CancellationToken ct = default)
    {
        for (var i = 0; i < chunksFirst; i++)
        {
            await Task.Yield();
            yield return new InferChunk { RequestId = "r", Text = "partial", Index = i };
        }
        throw RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "busy", TimeSpan.FromSeconds(2.5));
    }

    private const int Port = 8080;

    private const string Json = "application/json";

    private static Task<HttpContext> SendAsync(P2PInferenceClient client, string path, string body, string? bearer = null,
        string? contentType = Json, string host = "127.0.0.1:8080", string? origin = null, Stream? responseBody = null) =>
        SendAsync(new OpenAiApi(client, client.Options.TimeProvider, NullLogger.Instance, new OpenAiGuard(System.Net.IPAddress.Loopback)),
            path, body, bearer, contentType, host, origin, responseBody);

    /// <summary>An HTTP request as Kestrel hands it over on <see cref="Port"/>: by default what the OpenAI SDKs send.</summary>
    private static async Task<HttpContext> SendAsync(OpenAiApi api, string path, string? body, string? bearer = null,
        string? contentType = Json, string host = "127.0.0.1:8080", string? origin = null, Stream? responseBody = null)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = body is null ? "GET" : "POST";
        context.Request.Path = path;
        context.Request.Host = new HostString(host);
        context.Connection.LocalPort = Port;
        if (body is not null) context.Request.Body = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(body));
        if (body is not null && contentType is not null) context.Request.ContentType = contentType;
        if (bearer is not null) context.Request.Headers.Authorization = "Bearer " + bearer;
        if (origin is not null) context.Request.Headers.Origin = origin;
        context.Response.Body = responseBody ?? new MemoryStream();
        await (path.EndsWith("/chat/completions", StringComparison.Ordinal) ? api.ChatCompletionsAsync(context)
            : path.EndsWith("/completions", StringComparison.Ordinal) ? api.CompletionsAsync(context)
            : api.ModelsAsync(context));
        return context;
    }

    private static string BodyOf(HttpContext context) => System.Text.Encoding.UTF8.GetString(((MemoryStream)context.Response.Body).ToArray());
}
