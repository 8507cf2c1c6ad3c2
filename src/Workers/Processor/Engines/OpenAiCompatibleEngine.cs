using System.ClientModel;
using System.ClientModel.Primitives;
using System.Collections.Concurrent;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using SdkChatMessage = OpenAI.Chat.ChatMessage;

namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// A client of any OpenAI-compatible server (Ollama, llama.cpp's server, vLLM) through the official
/// OpenAI .NET SDK: <c>POST /v1/chat/completions</c> streamed, <c>GET /v1/models</c>. The SDK's
/// failures become typed <see cref="InferenceException"/>s; cancelling the caller's token aborts the
/// HTTP request. What callers see (errors, model descriptions) names the server without the
/// credentials a BaseUrl may carry.
/// </summary>
/// <remarks>
/// The SDK resumes on the thread pool (its awaits do not keep the caller's context), so this engine is a
/// real-time component: simulated tests use the builtin engine or a double, not this one.
/// </remarks>
public sealed class OpenAiCompatibleEngine : IInferenceEngine
{
    public const string EngineKind = "openai";

    /// <summary>Chunks beyond MaxTokens that a server may send (role, finish and usage chunks).</summary>
    private const int ExtraChunkAllowance = 16;

    private readonly HttpClient _http;
    private readonly OpenAIClient _client;
    private readonly ConcurrentDictionary<string, ChatClient> _chatClients = new(StringComparer.Ordinal);
    private readonly string _shownRoot;
    private readonly int _contextLength;
    private readonly int _maxOutputTokens;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _timeProvider;
    private readonly bool _modelsConfigured;
    private volatile IReadOnlyList<ModelInfo> _models;

    public OpenAiCompatibleEngine(OpenAiCompatibleEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = Validate(options);
        if (errors.Count > 0) throw new EngineConfigurationException(errors);

        var root = NormalizeRoot(options.BaseUrl!);
        _shownRoot = root.ToString().TrimEnd('/');
        _contextLength = options.ContextLength;
        _maxOutputTokens = options.MaxOutputTokens;
        _timeout = options.Timeout;
        _timeProvider = options.TimeProvider ?? TimeProvider.System;

        HttpMessageHandler inner = options.HttpMessageHandler is { } handler
            ? new NonDisposingHandler(handler)
            : new SocketsHttpHandler();
        // Our own idle timeout runs on the injected clock; HttpClient's and the SDK's would run on the wall clock.
        _http = new HttpClient(new OpenAiResponseGuard(inner, options.MaxResponseBytes), disposeHandler: true)
        {
            Timeout = System.Threading.Timeout.InfiniteTimeSpan,
        };
        var clientOptions = new OpenAIClientOptions
        {
            Endpoint = new Uri(root, "v1"),
            Transport = new HttpClientPipelineTransport(_http),
            // A retry would wait on the wall clock and hide the server's answer from the scheduler, which decides itself.
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
            NetworkTimeout = System.Threading.Timeout.InfiniteTimeSpan,
        };
#pragma warning disable OPENAI001 // The policy form is the SDK's way to send no key at all, or Basic credentials from the URL.
        _client = new OpenAIClient(new ServerCredentialsPolicy(options.ApiKey, options.BaseUrl!.UserInfo), clientOptions);
#pragma warning restore OPENAI001
        _modelsConfigured = options.Models.Count > 0;
        _models = [.. options.Models.Distinct(StringComparer.Ordinal).Select(ToModelInfo)];
    }

    public string Kind => EngineKind;

    public IReadOnlyList<ModelInfo> Models => _models;

    /// <summary>The server root requests go to (BaseUrl without credentials and without a trailing <c>/v1</c>).</summary>
    public Uri BaseUrl => new(_shownRoot);

    /// <summary>Asks the server for its models unless they were configured.</summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        if (_modelsConfigured) return;
        using var idle = new IdleTimeout(_timeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        List<string> names;
        try
        {
            var result = await _client.GetOpenAIModelClient().GetModelsAsync(linked.Token);
            names = [.. result.Value.Select(m => m.Id).Where(id => !string.IsNullOrWhiteSpace(id))];
        }
        catch (Exception e) when (Translate(e, idle, cancellationToken) is { } typed)
        {
            throw typed;
        }
        _models = [.. names.Distinct(StringComparer.Ordinal).Select(ToModelInfo)];
    }

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(
        InferenceRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        request.ValidateShape();
        var models = _models;
        ModelInfo model;
        if (models.Count == 0)
        {
            // Not initialized and nothing configured: the server decides (404 → ModelNotFound).
            model = ToModelInfo(request.Model);
        }
        else
        {
            model = models.FirstOrDefault(m => m.Name == request.Model)
                ?? throw new InferenceException(InferenceErrorKind.ModelNotFound,
                    $"Model '{request.Model}' is not served here; this engine serves {string.Join(", ", models.Select(m => m.Name))}.");
        }
        request.ValidateAgainst(model);
        var generation = EngineGeneration.From(request);

        using var idle = new IdleTimeout(_timeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        var chat = _chatClients.GetOrAdd(generation.Model, _client.GetChatClient);
        var updates = chat.CompleteChatStreamingAsync(ToSdkMessages(generation), ToSdkOptions(generation), linked.Token);
        var enumerator = updates.GetAsyncEnumerator(linked.Token);
        await using var enumeratorScope = enumerator;

        var index = 0;
        var contentChunks = 0;
        FinishReason? finish = null;
        TokenUsage? usage = null;
        var tail = string.Empty;
        while (true)
        {
            string text;
            try
            {
                if (!await enumerator.MoveNextAsync()) break;
                idle.Reset();
                var update = enumerator.Current;
                ThrowIfError(update);
                text = string.Concat(update.ContentUpdate.Where(p => p.Kind == ChatMessageContentPartKind.Text).Select(p => p.Text));
                if (update.FinishReason is { } reason) finish = Map(reason);
                if (update.Usage is { } u) usage = new TokenUsage(u.InputTokenCount, u.OutputTokenCount);
            }
            catch (Exception e) when (Translate(e, idle, cancellationToken) is { } typed)
            {
                throw typed;
            }
            if (text.Length == 0) continue;
            if (++contentChunks > generation.MaxTokens + ExtraChunkAllowance)
            {
                throw new InferenceException(InferenceErrorKind.MalformedResponse,
                    $"The model server sent more than the {generation.MaxTokens} tokens asked for.");
            }
            if (finish is not null)
            {
                // Text that came with the finish reason ends the stream with it, after any usage chunk.
                tail += text;
                continue;
            }
            yield return new GeneratedToken(index++, text);
        }
        if (finish is null)
            throw new InferenceException(InferenceErrorKind.MalformedResponse, "The model server ended the stream before it was complete (no finish reason, no [DONE]).");
        yield return EngineGeneration.Finish(index, tail, finish.Value, usage);
    }

    public void Dispose() => _http.Dispose();

    internal static List<string> Validate(OpenAiCompatibleEngineOptions options)
    {
        var errors = new List<string>();
        if (options.BaseUrl is null)
            errors.Add("Engine:BaseUrl is required when Engine:Kind is 'openai' (e.g. http://127.0.0.1:11434).");
        else if (!options.BaseUrl.IsAbsoluteUri || (options.BaseUrl.Scheme != Uri.UriSchemeHttp && options.BaseUrl.Scheme != Uri.UriSchemeHttps))
            errors.Add($"Engine:BaseUrl '{WithoutCredentials(options.BaseUrl.OriginalString)}' is not an absolute http or https URL.");
        if (options.Models.Any(string.IsNullOrWhiteSpace))
            errors.Add("Engine:Models has an empty model name.");
        if (options.ContextLength < 1)
            errors.Add($"Engine:ContextLength must be at least 1 (was {options.ContextLength}).");
        if (options.MaxOutputTokens < 1)
            errors.Add($"Engine:MaxTokens must be at least 1 (was {options.MaxOutputTokens}).");
        if (options.Timeout <= TimeSpan.Zero && options.Timeout != System.Threading.Timeout.InfiniteTimeSpan)
            errors.Add($"Engine:Timeout must be positive (was {options.Timeout}).");
        else if (options.Timeout > Hosting.DurationLimits.MaxTimer)
            errors.Add($"Engine:Timeout must be at most {Hosting.DurationLimits.MaxTimer} (about 49.7 days, the longest a timer accepts; was {options.Timeout}).");
        if (options.MaxResponseBytes < 1024)
            errors.Add($"Engine:MaxResponseBytes must be at least 1024 (was {options.MaxResponseBytes}).");
        return errors;
    }

    /// <summary>A URL as text with any <c>user:password@</c> removed, for messages (also for text that does not parse).</summary>
    internal static string WithoutCredentials(string url)
    {
        var scheme = url.IndexOf("://", StringComparison.Ordinal);
        var start = scheme < 0 ? 0 : scheme + 3;
        var end = url.IndexOfAny(['/', '?', '#'], start);
        var at = url.AsSpan(start, (end < 0 ? url.Length : end) - start).LastIndexOf('@');
        return at >= 0 ? url[..start] + url[(start + at + 1)..] : url;
    }

    /// <summary>The server root without credentials, query or a trailing <c>/v1</c>, ending in a slash.</summary>
    private static Uri NormalizeRoot(Uri baseUrl)
    {
        var root = baseUrl.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped).TrimEnd('/');
        if (root.EndsWith("/v1", StringComparison.OrdinalIgnoreCase)) root = root[..^3];
        return new Uri(root + "/");
    }

    private ModelInfo ToModelInfo(string name) =>
        new(name, "Served by an OpenAI-compatible model server.", _contextLength, _maxOutputTokens);

    private static List<SdkChatMessage> ToSdkMessages(EngineGeneration generation) =>
        [.. generation.Messages.Select(m => m.Role.Trim().ToLowerInvariant() switch
        {
            "system" or "developer" => (SdkChatMessage)new SystemChatMessage(m.Content),
            "assistant" => new AssistantChatMessage(m.Content),
            _ => new UserChatMessage(m.Content),
        })];

    internal static ChatCompletionOptions ToSdkOptions(EngineGeneration generation)
    {
        var options = new ChatCompletionOptions
        {
            MaxOutputTokenCount = generation.MaxTokens,
            Temperature = (float)generation.Temperature,
        };
        if (generation.TopP is { } topP) options.TopP = (float)topP;
#pragma warning disable OPENAI001, SCME0001 // Seed and the raw-JSON patch are marked experimental in the SDK; both are plain wire fields.
        if (generation.Seed is { } seed) options.Seed = seed;
        // llama.cpp's server and older Ollama read the legacy max_tokens; the SDK writes only max_completion_tokens.
        options.Patch.Set("$.max_tokens"u8, generation.MaxTokens);
#pragma warning restore OPENAI001, SCME0001
        foreach (var stop in generation.Stop) options.StopSequences.Add(stop);
        return options;
    }

    private static FinishReason Map(ChatFinishReason reason) => reason switch
    {
        ChatFinishReason.Length => FinishReason.Length,
        _ => FinishReason.Stop, // stop, content_filter, tool_calls: the text is complete
    };

    /// <summary>An <c>{"error":…}</c> event in the stream (llama.cpp and vLLM send one when generation fails midway).</summary>
    private static void ThrowIfError(StreamingChatCompletionUpdate update)
    {
#pragma warning disable SCME0001 // The SDK keeps fields it does not model in the experimental Patch; an error event is one.
        if (!update.Patch.Contains("$.error"u8)) return;
        var raw = update.Patch.GetJson("$.error"u8);
#pragma warning restore SCME0001
        throw new InferenceException(InferenceErrorKind.EngineError, "The model server reported an error: " + ErrorMessageOf(raw.ToArray(), wrapped: false));
    }

    /// <summary>
    /// The typed error for an exception out of the SDK or the HTTP stack; null for an exception
    /// that is not about the server (a bug here, which should surface as it is).
    /// </summary>
    private Exception? Translate(Exception e, IdleTimeout idle, CancellationToken callerToken)
    {
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is InferenceException typed) return typed;
        }
        switch (e)
        {
            case OperationCanceledException when callerToken.IsCancellationRequested:
                return new OperationCanceledException("The inference request was cancelled.", e, callerToken);
            case OperationCanceledException when idle.TimedOut:
                return new InferenceException(InferenceErrorKind.Timeout,
                    $"The model server at {_shownRoot} did not answer within {idle.Timeout}.", innerException: e);
            case ClientResultException { Status: > 0 } failure:
                return FromStatus(failure);
            case ClientResultException failure:
                return new InferenceException(InferenceErrorKind.EngineUnavailable,
                    $"Cannot reach the model server at {_shownRoot}: {(failure.InnerException ?? failure).Message}", innerException: e);
            case HttpRequestException:
                return new InferenceException(InferenceErrorKind.EngineUnavailable,
                    $"Cannot reach the model server at {_shownRoot}: {e.Message}", innerException: e);
            case IOException:
                return new InferenceException(InferenceErrorKind.EngineUnavailable,
                    $"The connection to the model server at {_shownRoot} broke: {e.Message}", innerException: e);
            case JsonException or FormatException or ArgumentException or InvalidOperationException or KeyNotFoundException or NullReferenceException:
                // The SDK's model readers: invalid JSON, a wrong type, an unknown enum value.
                return new InferenceException(InferenceErrorKind.MalformedResponse,
                    $"The model server's answer is not a valid OpenAI response: {e.Message}", innerException: e);
            default:
                return null;
        }
    }

    private InferenceException FromStatus(ClientResultException failure)
    {
        var status = failure.Status;
        var response = failure.GetRawResponse();
        var detail = response?.Content is { } content ? ErrorMessageOf(content.ToArray(), wrapped: true) : string.Empty;
        var kind = (HttpStatusCode)status switch
        {
            HttpStatusCode.NotFound => InferenceErrorKind.ModelNotFound,
            HttpStatusCode.BadRequest or HttpStatusCode.UnprocessableEntity or HttpStatusCode.RequestEntityTooLarge => InferenceErrorKind.InvalidRequest,
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => InferenceErrorKind.Unauthorized,
            HttpStatusCode.TooManyRequests => InferenceErrorKind.RateLimited,
            HttpStatusCode.RequestTimeout or HttpStatusCode.GatewayTimeout => InferenceErrorKind.Timeout,
            _ when status >= 500 => InferenceErrorKind.EngineUnavailable,
            _ => InferenceErrorKind.EngineError,
        };
        var message = $"The model server answered {status} {response?.ReasonPhrase}".TrimEnd()
            + (detail.Length > 0 ? ": " + detail : ".");
        // The SDK's own message lists the response's headers; the typed error keeps only what a caller can use.
        return new InferenceException(kind, message, status) { RetryAfter = RetryAfterOf(response) };
    }

    private TimeSpan? RetryAfterOf(PipelineResponse? response)
    {
        if (response is null || !response.Headers.TryGetValue("Retry-After", out var value) || string.IsNullOrWhiteSpace(value)) return null;
        if (int.TryParse(value.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seconds))
            return TimeSpan.FromSeconds(seconds);
        if (DateTimeOffset.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var date))
        {
            var wait = date - _timeProvider.GetUtcNow();
            return wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
        }
        return null;
    }

    /// <summary>The human part of an error body: <c>error.message</c>, <c>message</c>, the error string, or the start of the text.</summary>
    /// <param name="wrapped">The body is a whole response (<c>{"error":…}</c>) rather than the error object itself.</param>
    internal static string ErrorMessageOf(byte[] body, bool wrapped)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var error = document.RootElement;
            if (wrapped && error.ValueKind == JsonValueKind.Object && error.TryGetProperty("error", out var inner)) error = inner;
            if (error.ValueKind == JsonValueKind.String) return Shorten(error.GetString()!);
            if (error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String)
                return Shorten(m.GetString()!);
        }
        catch (JsonException)
        {
            // Not JSON: show the start of the text.
        }
        return Shorten(System.Text.Encoding.UTF8.GetString(body));
    }

    private static string Shorten(string text)
    {
        text = text.Trim();
        return text.Length <= 300 ? text : text[..300] + "…";
    }

    /// <summary>Sends the API key as a bearer token, else the BaseUrl's <c>user:password</c> as Basic credentials, else nothing.</summary>
    private sealed class ServerCredentialsPolicy(string? apiKey, string userInfo) : AuthenticationPolicy
    {
        private readonly string? _authorization = !string.IsNullOrEmpty(apiKey)
            ? "Bearer " + apiKey
            : userInfo.Length > 0
                ? "Basic " + Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(Uri.UnescapeDataString(userInfo)))
                : null;

        public override void Process(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            Authorize(message);
            ProcessNext(message, pipeline, currentIndex);
        }

        public override async ValueTask ProcessAsync(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            Authorize(message);
            await ProcessNextAsync(message, pipeline, currentIndex);
        }

        private void Authorize(PipelineMessage message)
        {
            if (_authorization is not null) message.Request.Headers.Set("Authorization", _authorization);
        }
    }

    /// <summary>Lets the engine wrap a handler it was given without disposing it.</summary>
    private sealed class NonDisposingHandler(HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        protected override void Dispose(bool disposing)
        {
            // The handler belongs to whoever passed it in.
        }
    }
}
