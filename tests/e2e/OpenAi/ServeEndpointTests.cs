using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using P2PInference.Tests.Shared;
using P2PInference.Workers.Client;
using P2PInference.Workers.Client.OpenAi;

namespace P2PInference.Tests.E2E.OpenAi;

/// <summary>
/// <c>client serve</c> in front of the real workers on TCP loopback, driven by clients no one here
/// wrote the server for: a plain HttpClient speaking OpenAI's JSON and SSE, and the official OpenAI
/// .NET SDK. Unary and streamed chats and completions, the model list, credentials from the profile
/// or a Bearer key, a client hanging up (the processor sees the cancel), 400, 401 and 429.
/// Real sockets mean real time: the waits are for responses and for the processor's cancel, each bounded.
/// Users have a burst of <see cref="ServeNetwork.Burst"/> requests: tests that need more take a user of their own.
/// </summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(240_000)]
public sealed class ServeEndpointTests
{
    private static readonly TimeSpan CancelSeen = TimeSpan.FromSeconds(60);

    private ServedNetwork _served = null!;
    private HttpClient _http = null!;

    private ServeNetwork Network => _served.Network;
    private P2PInferenceClient Client => _served.Client;
    private OpenAiServer Server => _served.Server;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        _served = await ServedNetwork.StartAsync(timeout.Token);
        _http = new HttpClient { BaseAddress = new Uri(Server.Address + "/"), Timeout = TimeSpan.FromMinutes(1) };
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        _http?.Dispose();
        if (_served is not null) await _served.DisposeAsync();
    }

    [Test]
    public async Task Serve_ListensOnLoopback_AndListsTheNetworksModels(CancellationToken ct)
    {
        using var response = await _http.GetAsync("models", ct);
        var json = await JsonOf(response, ct);

        Assert.Multiple(() =>
        {
            Assert.That(Server.Address.Host, Is.EqualTo("127.0.0.1"));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That((string?)json["object"], Is.EqualTo("list"));
            Assert.That(json["data"]!.AsArray().Select(m => (string?)m!["id"]), Does.Contain(ServeNetwork.Model));
        });
    }

    [Test]
    public async Task ChatCompletion_Unary_WithTheProfilesKey_ReturnsTextUsageAndFinishReason(CancellationToken ct)
    {
        using var response = await PostAsync("chat/completions", Chat("unary", stream: false, maxTokens: 8), bearer: null, ct);
        var json = await JsonOf(response, ct);

        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), json.ToJsonString());
            Assert.That((string?)json["object"], Is.EqualTo("chat.completion"));
            Assert.That((string?)json["model"], Is.EqualTo(ServeNetwork.Model));
            Assert.That((string?)json["choices"]![0]!["message"]!["role"], Is.EqualTo("assistant"));
            Assert.That((string?)json["choices"]![0]!["message"]!["content"], Does.Match(@"\w"));
            Assert.That((string?)json["choices"]![0]!["finish_reason"], Is.EqualTo("length"));
            Assert.That((int?)json["usage"]!["completion_tokens"], Is.EqualTo(8));
            Assert.That((int?)json["usage"]!["prompt_tokens"], Is.GreaterThan(0));
        });
    }

    [Test]
    public async Task ChatCompletion_Streamed_IsServerSentEvents_EndingInDone_WithTheSameTextAsUnary(CancellationToken ct)
    {
        var key = await Network.NewApiKeyAsync(ct);
        using var unary = await PostAsync("chat/completions", Chat("same text", stream: false, maxTokens: 12), key, ct);
        var whole = (string?)(await JsonOf(unary, ct))["choices"]![0]!["message"]!["content"];

        var started = TimeProvider.System.GetTimestamp();
        using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = Body(Chat("same text", stream: true, maxTokens: 12, includeUsage: true)) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        var events = await EventsOf(response, ct);
        var elapsed = TimeProvider.System.GetElapsedTime(started);

        var chunks = events.Take(events.Count - 1).Select(e => JsonNode.Parse(e)!).ToList();
        var text = string.Concat(chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => (string?)c["choices"]![0]!["delta"]!["content"] ?? ""));
        var finishes = chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => (string?)c["choices"]![0]!["finish_reason"]).ToList();
        TestContext.Out.WriteLine($"streamed {chunks.Count} events, 12 tokens through client serve in {elapsed.TotalMilliseconds:0} ms " +
            $"({12 / elapsed.TotalSeconds:0.#} tokens/s; the engine pauses 10 ms per token)");
        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/event-stream"));
            Assert.That(events[^1], Is.EqualTo("[DONE]"));
            Assert.That(chunks.Select(c => (string?)c["object"]), Is.All.EqualTo("chat.completion.chunk"));
            Assert.That((string?)chunks[0]["choices"]![0]!["delta"]!["role"], Is.EqualTo("assistant"));
            Assert.That(text, Is.EqualTo(whole), "temperature 0: the same text streamed or not");
            Assert.That(finishes[^1], Is.EqualTo("length"));
            Assert.That(finishes.Take(finishes.Count - 1), Is.All.Null, "only the last choice finishes");
            Assert.That((int?)chunks[^1]["usage"]!["completion_tokens"], Is.EqualTo(12), "include_usage: a last chunk with the usage");
        });
    }

    [Test]
    public async Task Completions_ContinueAPrompt_UnaryAndStreamed(CancellationToken ct)
    {
        var key = await Network.NewApiKeyAsync(ct);
        var body = new JsonObject { ["model"] = ServeNetwork.Model, ["prompt"] = "The network", ["max_tokens"] = 5, ["temperature"] = 0 };
        using var unary = await PostAsync("completions", body, key, ct);
        var json = await JsonOf(unary, ct);
        body["stream"] = true;
        using var streamed = await PostAsync("completions", body, key, ct);
        var events = await EventsOf(streamed, ct);
        var text = string.Concat(events.Take(events.Count - 1).Select(e => (string?)JsonNode.Parse(e)!["choices"]![0]!["text"]));

        Assert.Multiple(() =>
        {
            Assert.That((string?)json["object"], Is.EqualTo("text_completion"));
            Assert.That((string?)json["choices"]![0]!["text"], Does.Match(@"\w"));
            Assert.That(text, Is.EqualTo((string?)json["choices"]![0]!["text"]));
            Assert.That(events[^1], Is.EqualTo("[DONE]"));
        });
    }

    [Test]
    public async Task ClosingTheHttpConnection_MidStream_CancelsTheGenerationOnTheProcessor(CancellationToken ct)
    {
        var marker = "hang up " + Guid.NewGuid().ToString("N");
        var cancelled = Network.Engine.CancelledAsync(marker);
        var mark = Network.Log.Mark();
        using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = Body(Chat(marker, stream: true, maxTokens: 500)) };
        var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        var first = await reader.ReadLineAsync(ct);

        response.Dispose();
        await cancelled.WaitAsync(CancelSeen, ct);
        // ASP.NET Core logs a request's end after its handler has returned: every line the handler wrote comes before it.
        await Network.Log.WaitForAsync(mark, line => line.Contains("Request finished", StringComparison.Ordinal) && line.Contains("/v1/chat/completions", StringComparison.Ordinal), ct)
            .WaitAsync(CancelSeen, ct);

        Assert.That(first, Does.StartWith("data: {"));
        Assert.That(cancelled.IsCompletedSuccessfully, Is.True, "the processor's engine saw the cancel, two hops away");
        Assert.That(Network.Log.Since(mark).Count(line => line.Contains("the HTTP client went away", StringComparison.Ordinal)), Is.EqualTo(1),
            "serve logs the hang-up once:\n" + string.Join("\n", Network.Log.Since(mark)));
    }

    [Test]
    public async Task WebPages_AreRefused_ButLocalNamesAreServed(CancellationToken ct)
    {
        var chat = Chat("from a web page", stream: false, maxTokens: 3).ToJsonString();
        // A "simple" cross-site POST (no preflight), a fetch from another origin, and DNS rebinding (another name for 127.0.0.1).
        using var textPlain = await _http.PostAsync("chat/completions", new StringContent(chat, Encoding.UTF8, "text/plain"), ct);
        using var crossOrigin = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = new StringContent(chat, Encoding.UTF8, "application/json") };
        crossOrigin.Headers.Add("Origin", "https://evil.example");
        using var fromOrigin = await _http.SendAsync(crossOrigin, ct);
        using var rebound = new HttpRequestMessage(HttpMethod.Get, "models");
        rebound.Headers.Host = $"evil.example:{Server.Address.Port}";
        using var byName = await _http.SendAsync(rebound, ct);
        using var local = new HttpRequestMessage(HttpMethod.Get, "models");
        local.Headers.Host = $"localhost:{Server.Address.Port}";
        using var byLocalhost = await _http.SendAsync(local, ct);
        var originError = await JsonOf(fromOrigin, ct);
        var hostError = await JsonOf(byName, ct);

        Assert.Multiple(() =>
        {
            Assert.That(textPlain.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType));
            Assert.That(fromOrigin.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((string?)originError["error"]!["code"], Is.EqualTo("cross_origin_refused"));
            Assert.That(byName.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((string?)hostError["error"]!["code"], Is.EqualTo("host_not_allowed"));
            Assert.That(byLocalhost.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        });
    }

    [Test]
    public async Task BadInput_Is400_InOpenAisErrorShape(CancellationToken ct)
    {
        using var noMessages = await PostAsync("chat/completions", new JsonObject { ["model"] = ServeNetwork.Model }, null, ct);
        using var notJson = await _http.PostAsync("chat/completions", new StringContent("{not json", Encoding.UTF8, "application/json"), ct);
        using var hot = await PostAsync("chat/completions", Chat("too hot", stream: false, maxTokens: 3, temperature: 5), null, ct);
        using var wrongPath = await _http.GetAsync("engines", ct);
        var refused = await JsonOf(noMessages, ct);
        var fromGateway = await JsonOf(hot, ct);

        Assert.Multiple(() =>
        {
            Assert.That(noMessages.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That((string?)refused["error"]!["type"], Is.EqualTo("invalid_request_error"));
            Assert.That((string?)refused["error"]!["param"], Is.EqualTo("messages"));
            Assert.That((string?)refused["error"]!["message"], Is.Not.Empty);
            Assert.That(notJson.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(hot.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "the gateway's InvalidArgument");
            Assert.That((string?)fromGateway["error"]!["message"], Does.Contain("temperature"));
            Assert.That(wrongPath.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        });
    }

    [Test]
    public async Task Credentials_ABearerKeyIsUsedAsTheApiKey_AndAWrongOrMissingOneIs401(CancellationToken ct)
    {
        await using var anonymous = await P2PInferenceClient.ConnectAsync([Network.Bootstrap], new ClientOptions { ClusterId = ServeNetwork.Cluster.Id }, ct);
        await using var server = await Network.ServeAsync(anonymous, ct);
        using var http = new HttpClient { BaseAddress = new Uri(server.Address + "/") };

        using var withKey = await PostAsync(http, "chat/completions", Chat("with a key", stream: false, maxTokens: 3), Client.ApiKey, ct);
        using var without = await PostAsync(http, "chat/completions", Chat("no key", stream: false, maxTokens: 3), null, ct);
        using var wrong = await PostAsync(http, "chat/completions", Chat("wrong key", stream: false, maxTokens: 3), "sk-not-a-key", ct);
        var missing = await JsonOf(without, ct);
        var refused = await JsonOf(wrong, ct);

        Assert.Multiple(() =>
        {
            Assert.That(withKey.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(without.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That((string?)missing["error"]!["type"], Is.EqualTo("authentication_error"));
            Assert.That(wrong.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That((string?)refused["error"]!["type"], Is.EqualTo("authentication_error"));
        });
    }

    [Test]
    public async Task RateLimit_Is429_WithRetryAfter_ForHttpAndTheOpenAiSdk(CancellationToken ct)
    {
        var key = await Network.NewApiKeyAsync(ct);
        HttpResponseMessage? limited = null;
        for (var i = 0; i <= ServeNetwork.Burst && limited is null; i++)
        {
            var response = await PostAsync("chat/completions", Chat("quota", stream: false, maxTokens: 1), key, ct);
            if (response.StatusCode == HttpStatusCode.TooManyRequests) limited = response;
            else response.Dispose();
        }
        var sdk = Sdk(key);
        var sdkFailure = await FailureOf(() => sdk.CompleteChatAsync([new UserChatMessage("quota")], Greedy(1), ct));

        Assert.That(limited, Is.Not.Null, $"a user with a burst of {ServeNetwork.Burst} is limited");
        using (limited)
        {
            var json = await JsonOf(limited!, ct);
            Assert.Multiple(() =>
            {
                Assert.That(limited!.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero));
                Assert.That((string?)json["error"]!["type"], Is.EqualTo("rate_limit_error"));
                Assert.That((string?)json["error"]!["code"], Is.EqualTo("rate_limit_exceeded"));
                Assert.That(sdkFailure.Status, Is.EqualTo(429));
            });
        }
    }

    [Test]
    public async Task OpenAiSdk_ChatUnaryAndStreaming_ThroughTheEndpoint(CancellationToken ct)
    {
        var sdk = Sdk(await Network.NewApiKeyAsync(ct));
        List<OpenAI.Chat.ChatMessage> chat = [new SystemChatMessage("Answer in one line."), new UserChatMessage("The network")];

        ChatCompletion completion = await sdk.CompleteChatAsync(chat, Greedy(10), ct);
        var streamed = new StringBuilder();
        var updates = 0;
        OpenAI.Chat.ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        await foreach (var update in sdk.CompleteChatStreamingAsync(chat, Greedy(10), ct))
        {
            updates++;
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }

        Assert.Multiple(() =>
        {
            Assert.That(completion.Content.Single().Text, Does.Match(@"\w"));
            Assert.That(completion.FinishReason, Is.EqualTo(OpenAI.Chat.ChatFinishReason.Length));
            Assert.That(completion.Usage.OutputTokenCount, Is.EqualTo(10));
            Assert.That(completion.Usage.InputTokenCount, Is.GreaterThan(0));
            Assert.That(completion.Role, Is.EqualTo(ChatMessageRole.Assistant));
            Assert.That(updates, Is.GreaterThan(1), "the SDK saw a stream");
            Assert.That(streamed.ToString(), Is.EqualTo(completion.Content.Single().Text));
            Assert.That(finish, Is.EqualTo(OpenAI.Chat.ChatFinishReason.Length));
        });
        TestContext.Out.WriteLine($"OpenAI SDK: {updates} streamed updates; usage on the stream: {usage?.OutputTokenCount.ToString() ?? "not asked for"}");
    }

    [Test]
    public async Task OpenAiSdk_CancellingAStream_CancelsTheGenerationOnTheProcessor_AndAWrongKeyIs401(CancellationToken ct)
    {
        var marker = "sdk cancel " + Guid.NewGuid().ToString("N");
        var cancelled = Network.Engine.CancelledAsync(marker);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var received = 0;
        try
        {
            await foreach (var update in Sdk(await Network.NewApiKeyAsync(ct)).CompleteChatStreamingAsync([new UserChatMessage(marker)], Greedy(500), stop.Token))
            {
                if (update.ContentUpdate.Count > 0 && ++received == 2) stop.Cancel();
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The SDK ends a cancelled stream this way.
        }
        await cancelled.WaitAsync(CancelSeen, ct);
        var unauthorized = await FailureOf(() => Sdk("sk-wrong").CompleteChatAsync([new UserChatMessage("hi")], Greedy(2), ct));

        Assert.Multiple(() =>
        {
            Assert.That(received, Is.EqualTo(2));
            Assert.That(cancelled.IsCompletedSuccessfully, Is.True);
            Assert.That(unauthorized.Status, Is.EqualTo(401));
        });
    }

    [Test]
    public async Task ChatClient_StoppingAStreamingResponse_CancelsTheGenerationOnTheProcessor(CancellationToken ct)
    {
        await using var user = await Network.SignedUpClientAsync(ct);
        var marker = "chat client cancel " + Guid.NewGuid().ToString("N");
        var cancelled = Network.Engine.CancelledAsync(marker);
        using var chat = user.AsChatClient(ServeNetwork.Model);

        var updates = 0;
        await foreach (var update in chat.GetStreamingResponseAsync([new Microsoft.Extensions.AI.ChatMessage(Microsoft.Extensions.AI.ChatRole.User, marker)], new Microsoft.Extensions.AI.ChatOptions { MaxOutputTokens = 500, Temperature = 0 }, ct))
        {
            if (++updates == 2) break;
        }
        await cancelled.WaitAsync(CancelSeen, ct);

        Assert.That(cancelled.IsCompletedSuccessfully, Is.True, "leaving the enumeration cancelled the request at the processor");
    }

    /// <summary>
    /// Not a pass/fail on time (timing lives in the benchmarks): prints what `client serve` adds over
    /// calling the SDK directly, per request, the same requests measured in the same run.
    /// </summary>
    [Test]
    public async Task Latency_OfServe_OverTheSdkPath_IsMeasured(CancellationToken ct)
    {
        const int Rounds = 3;
        var direct = new List<double>();
        var served = new List<double>();
        for (var user = 0; user < 3; user++)
        {
            await using var client = await Network.SignedUpClientAsync(ct);
            for (var i = 0; i < Rounds; i++)
            {
                var request = new P2PInference.Workers.Contracts.Inference.InferRequest { Model = ServeNetwork.Model, Prompt = "The network", MaxTokens = 1, Temperature = 0 };
                var begin = TimeProvider.System.GetTimestamp();
                await client.InferAsync(request, ct);
                direct.Add(TimeProvider.System.GetElapsedTime(begin).TotalMilliseconds);
                begin = TimeProvider.System.GetTimestamp();
                using var response = await PostAsync("completions", new JsonObject { ["model"] = ServeNetwork.Model, ["prompt"] = "The network", ["max_tokens"] = 1, ["temperature"] = 0 },
                    client.ApiKey, ct);
                await response.Content.ReadAsStringAsync(ct);
                served.Add(TimeProvider.System.GetElapsedTime(begin).TotalMilliseconds);
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            }
        }
        direct.Sort();
        served.Sort();
        TestContext.Out.WriteLine($"one-token request, median of {direct.Count}: SDK {direct[direct.Count / 2]:0.0} ms, " +
            $"client serve {served[served.Count / 2]:0.0} ms (adds {served[served.Count / 2] - direct[direct.Count / 2]:0.0} ms)");
    }

    [Test]
    public async Task ClientServeCommand_ServesWithTheProfilesCredentials_UntilStopped(CancellationToken ct)
    {
        var directory = Directory.CreateTempSubdirectory("p2pinference-serve-cli-").FullName;
        try
        {
            var profile = Path.Combine(directory, "profile.json");
            await new ClientProfile { ApiKey = await Network.NewApiKeyAsync(ct), Bootstrap = [Network.Bootstrap.ToString()], Cluster = ServeNetwork.Cluster.Id.ToString() }.SaveAsync(profile, ct);
            await using var serve = CliProcess.Start("client", "serve", "--listen", "127.0.0.1:0", "--profile", profile);
            string? line;
            while ((line = await serve.Output.ReadLineAsync(ct)) is not null && !line.StartsWith("client serve ready: ", StringComparison.Ordinal))
            {
            }
            Assert.That(line, Is.Not.Null, "client serve printed its address");
            var address = line!["client serve ready: ".Length..].Split(' ')[0];
            using var http = new HttpClient { BaseAddress = new Uri(address + "/") };

            using var models = await http.GetAsync("models", ct);
            using var chat = await PostAsync(http, "chat/completions", Chat("from the command", stream: false, maxTokens: 4), null, ct);
            var exitCode = await serve.TerminateAsync(ct);

            Assert.Multiple(() =>
            {
                Assert.That(address, Does.StartWith("http://127.0.0.1:").And.EndWith("/v1"));
                Assert.That(models.StatusCode, Is.EqualTo(HttpStatusCode.OK));
                Assert.That(chat.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the profile's API key authenticated the request");
                Assert.That(exitCode, Is.Zero, "SIGTERM stops serving cleanly");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private ChatClient Sdk(string apiKey) => new(ServeNetwork.Model, new ApiKeyCredential(apiKey), new OpenAIClientOptions
    {
        Endpoint = Server.Address,
        // The tests look at the first answer; the SDK would otherwise retry 429 and 503 by itself.
        RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
    });

    private static ChatCompletionOptions Greedy(int maxTokens) => new() { Temperature = 0, MaxOutputTokenCount = maxTokens };

    private static async Task<ClientResultException> FailureOf(Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (ClientResultException e)
        {
            return e;
        }
        throw new AssertionException("the call succeeded; an error status was expected");
    }

    private static JsonObject Chat(string prompt, bool stream, int maxTokens, double temperature = 0, bool includeUsage = false)
    {
        var body = new JsonObject
        {
            ["model"] = ServeNetwork.Model,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
            ["max_tokens"] = maxTokens,
            ["temperature"] = temperature,
            ["stream"] = stream,
        };
        if (includeUsage) body["stream_options"] = new JsonObject { ["include_usage"] = true };
        return body;
    }

    private Task<HttpResponseMessage> PostAsync(string path, JsonObject body, string? bearer, CancellationToken ct) => PostAsync(_http, path, body, bearer, ct);

    private static async Task<HttpResponseMessage> PostAsync(HttpClient http, string path, JsonObject body, string? bearer, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Body(body) };
        if (bearer is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        return await http.SendAsync(request, ct);
    }

    private static StringContent Body(JsonObject body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");

    private static async Task<JsonNode> JsonOf(HttpResponseMessage response, CancellationToken ct) =>
        JsonNode.Parse(await response.Content.ReadAsStringAsync(ct))!;

    /// <summary>The data of each server-sent event, in order.</summary>
    private static async Task<List<string>> EventsOf(HttpResponseMessage response, CancellationToken ct)
    {
        var events = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add(line["data: ".Length..]);
            else Assert.That(line, Is.Empty, "events are single data lines separated by blank lines");
        }
        return events;
    }
}
