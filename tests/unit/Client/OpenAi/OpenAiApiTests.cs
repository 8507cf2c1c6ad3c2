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

    private static async IAsyncEnumerable<InferChunk> Fail(int chunksFirst, [EnumeratorCancellation] CancellationToken ct = default)
    {
        for (var i = 0; i < chunksFirst; i++)
        {
            await Task.Yield();
            yield return new InferChunk { RequestId = "r", Text = "partial", Index = i };
        }
        throw RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "busy", TimeSpan.FromSeconds(2.5));
    }

    private static async Task<HttpContext> SendAsync(P2PInferenceClient client, string path, string body, string? bearer = null)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "POST";
        context.Request.Path = path;
        context.Request.Body = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(body));
        if (bearer is not null) context.Request.Headers.Authorization = "Bearer " + bearer;
        context.Response.Body = new MemoryStream();
        var api = new OpenAiApi(client, client.Options.TimeProvider, NullLogger.Instance);
        await (path.EndsWith("/chat/completions", StringComparison.Ordinal) ? api.ChatCompletionsAsync(context) : api.CompletionsAsync(context));
        return context;
    }

    private static string BodyOf(HttpContext context) => System.Text.Encoding.UTF8.GetString(((MemoryStream)context.Response.Body).ToArray());
}
