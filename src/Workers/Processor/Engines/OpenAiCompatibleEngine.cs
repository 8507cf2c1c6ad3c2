using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text.Json;

namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// A client of any OpenAI-compatible server (Ollama, llama.cpp's server, vLLM):
/// <c>POST /v1/chat/completions</c> with <c>stream: true</c>, read as server-sent events; a server
/// that answers with one JSON document instead is understood too. Failures become typed
/// <see cref="InferenceException"/>s; cancelling the caller's token aborts the HTTP request.
/// </summary>
public sealed class OpenAiCompatibleEngine : IInferenceEngine
{
    public const string EngineKind = "openai";

    /// <summary>How much of an error body is read to find its message.</summary>
    private const int MaxErrorBodyBytes = 64 * 1024;

    /// <summary>Chunks beyond MaxTokens that a server may send (role, finish and usage chunks).</summary>
    private const int ExtraChunkAllowance = 16;

    private readonly HttpClient _http;
    private readonly string _root;
    private readonly string? _apiKey;
    private readonly int _contextLength;
    private readonly int _maxOutputTokens;
    private readonly TimeSpan _timeout;
    private readonly int _maxResponseBytes;
    private readonly TimeProvider _timeProvider;
    private readonly bool _modelsConfigured;
    private volatile IReadOnlyList<ModelInfo> _models;

    public OpenAiCompatibleEngine(OpenAiCompatibleEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = Validate(options);
        if (errors.Count > 0) throw new EngineConfigurationException(errors);

        _root = NormalizeRoot(options.BaseUrl!);
        _apiKey = string.IsNullOrEmpty(options.ApiKey) ? null : options.ApiKey;
        _contextLength = options.ContextLength;
        _maxOutputTokens = options.MaxOutputTokens;
        _timeout = options.Timeout;
        _maxResponseBytes = options.MaxResponseBytes;
        _timeProvider = options.TimeProvider ?? TimeProvider.System;
        _http = options.HttpMessageHandler is { } handler
            ? new HttpClient(handler, disposeHandler: false)
            : new HttpClient(new SocketsHttpHandler(), disposeHandler: true);
        // Our own idle timeout runs on the injected clock; HttpClient's would run on the wall clock.
        _http.Timeout = System.Threading.Timeout.InfiniteTimeSpan;
        _modelsConfigured = options.Models.Count > 0;
        _models = [.. options.Models.Distinct(StringComparer.Ordinal).Select(ToModelInfo)];
    }

    public string Kind => EngineKind;

    public IReadOnlyList<ModelInfo> Models => _models;

    /// <summary>The server root requests go to (BaseUrl without a trailing <c>/v1</c>).</summary>
    public Uri BaseUrl => new(_root);

    /// <summary>Asks the server for its models unless they were configured.</summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        if (_modelsConfigured) return;
        using var idle = new IdleTimeout(_timeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        var body = await GuardAsync(
            async () =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, _root + "/v1/models");
                AddHeaders(request);
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token);
                await ThrowIfFailedAsync(response, linked.Token);
                return await ReadBoundedAsync(response.Content, _maxResponseBytes, linked.Token);
            },
            idle,
            cancellationToken);
        _models = ParseModelList(body);
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

        using var idle = new IdleTimeout(_timeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        using var response = await GuardAsync(() => SendChatAsync(request, linked.Token), idle, cancellationToken);

        var mediaType = response.Content.Headers.ContentType?.MediaType;
        if (!string.Equals(mediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase))
        {
            // The server ignored stream:true and sent the whole completion at once.
            var body = await GuardAsync(() => ReadBoundedAsync(response.Content, _maxResponseBytes, linked.Token), idle, cancellationToken);
            yield return ParseCompletion(body);
            yield break;
        }

        var stream = await GuardAsync(() => response.Content.ReadAsStreamAsync(linked.Token), idle, cancellationToken);
        await using var streamScope = stream;
        using var reader = new SseReader(stream, _maxResponseBytes, idle.Reset);
        var index = 0;
        var contentChunks = 0;
        FinishReason? finish = null;
        while (true)
        {
            var data = await GuardAsync(() => reader.ReadEventDataAsync(linked.Token).AsTask(), idle, cancellationToken);
            if (data is null)
            {
                if (finish is null)
                    throw new InferenceException(InferenceErrorKind.MalformedResponse, "The model server ended the stream before it was complete (no [DONE]).");
                break;
            }
            if (data.AsSpan().Trim().SequenceEqual("[DONE]")) break;

            var (content, reason) = ParseChunk(data);
            finish = reason ?? finish;
            if (string.IsNullOrEmpty(content)) continue;
            if (++contentChunks > request.MaxTokens + ExtraChunkAllowance)
            {
                throw new InferenceException(InferenceErrorKind.MalformedResponse,
                    $"The model server sent more than the {request.MaxTokens} tokens asked for.");
            }
            yield return new GeneratedToken(index++, content);
        }
        yield return new GeneratedToken(index, string.Empty, finish ?? FinishReason.Stop);
    }

    public void Dispose() => _http.Dispose();

    internal static List<string> Validate(OpenAiCompatibleEngineOptions options)
    {
        var errors = new List<string>();
        if (options.BaseUrl is null)
            errors.Add("Engine:BaseUrl is required when Engine:Kind is 'openai' (e.g. http://127.0.0.1:11434).");
        else if (!options.BaseUrl.IsAbsoluteUri || (options.BaseUrl.Scheme != Uri.UriSchemeHttp && options.BaseUrl.Scheme != Uri.UriSchemeHttps))
            errors.Add($"Engine:BaseUrl '{options.BaseUrl.OriginalString}' is not an absolute http or https URL.");
        if (options.Models.Any(string.IsNullOrWhiteSpace))
            errors.Add("Engine:Models has an empty model name.");
        if (options.ContextLength < 1)
            errors.Add($"Engine:ContextLength must be at least 1 (was {options.ContextLength}).");
        if (options.MaxOutputTokens < 1)
            errors.Add($"Engine:MaxTokens must be at least 1 (was {options.MaxOutputTokens}).");
        if (options.Timeout <= TimeSpan.Zero && options.Timeout != System.Threading.Timeout.InfiniteTimeSpan)
            errors.Add($"Engine:Timeout must be positive (was {options.Timeout}).");
        if (options.MaxResponseBytes < 1024)
            errors.Add($"Engine:MaxResponseBytes must be at least 1024 (was {options.MaxResponseBytes}).");
        return errors;
    }

    private static string NormalizeRoot(Uri baseUrl)
    {
        var root = baseUrl.GetLeftPart(UriPartial.Path).TrimEnd('/');
        return root.EndsWith("/v1", StringComparison.OrdinalIgnoreCase) ? root[..^3] : root;
    }

    private ModelInfo ToModelInfo(string name) =>
        new(name, "Served by an OpenAI-compatible model server.", _contextLength, _maxOutputTokens);

    private void AddHeaders(HttpRequestMessage request)
    {
        if (_apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _apiKey);
    }

    private async Task<HttpResponseMessage> SendChatAsync(InferenceRequest request, CancellationToken cancellationToken)
    {
        using var httpRequest = new HttpRequestMessage(HttpMethod.Post, _root + "/v1/chat/completions")
        {
            Content = new ByteArrayContent(WriteChatRequest(request)),
        };
        httpRequest.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        httpRequest.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        httpRequest.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        AddHeaders(httpRequest);
        var response = await _http.SendAsync(httpRequest, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        try
        {
            await ThrowIfFailedAsync(response, cancellationToken);
            return response;
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }

    internal static byte[] WriteChatRequest(InferenceRequest request)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("model", request.Model);
            json.WriteStartArray("messages");
            foreach (var message in request.ToMessages())
            {
                json.WriteStartObject();
                json.WriteString("role", message.Role);
                json.WriteString("content", message.Content);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteBoolean("stream", true);
            json.WriteNumber("max_tokens", request.MaxTokens);
            json.WriteNumber("temperature", request.Temperature);
            if (request.Seed is { } seed) json.WriteNumber("seed", seed);
            if (request.Stop is { Count: > 0 } stop)
            {
                json.WriteStartArray("stop");
                foreach (var s in stop) json.WriteStringValue(s);
                json.WriteEndArray();
            }
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private async Task ThrowIfFailedAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode) return;
        var status = (int)response.StatusCode;
        string detail;
        try
        {
            detail = ErrorMessageOf(await ReadBoundedAsync(response.Content, MaxErrorBodyBytes, cancellationToken, truncate: true));
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            detail = string.Empty;
        }
        var kind = response.StatusCode switch
        {
            HttpStatusCode.NotFound => InferenceErrorKind.ModelNotFound,
            HttpStatusCode.BadRequest or HttpStatusCode.UnprocessableEntity or HttpStatusCode.RequestEntityTooLarge => InferenceErrorKind.InvalidRequest,
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => InferenceErrorKind.Unauthorized,
            HttpStatusCode.TooManyRequests => InferenceErrorKind.RateLimited,
            HttpStatusCode.RequestTimeout or HttpStatusCode.GatewayTimeout => InferenceErrorKind.Timeout,
            _ when status >= 500 => InferenceErrorKind.EngineUnavailable,
            _ => InferenceErrorKind.EngineError,
        };
        var message = $"The model server answered {status} {response.ReasonPhrase}".TrimEnd()
            + (detail.Length > 0 ? ": " + detail : ".");
        throw new InferenceException(kind, message, status) { RetryAfter = RetryAfterOf(response) };
    }

    private TimeSpan? RetryAfterOf(HttpResponseMessage response)
    {
        var retry = response.Headers.RetryAfter;
        if (retry?.Delta is { } delta) return delta;
        if (retry?.Date is { } date)
        {
            var wait = date - _timeProvider.GetUtcNow();
            return wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
        }
        return null;
    }

    private static string ErrorMessageOf(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("error", out var error))
            {
                if (error.ValueKind == JsonValueKind.String) return Shorten(error.GetString()!);
                if (error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String)
                    return Shorten(m.GetString()!);
            }
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.String)
                return Shorten(message.GetString()!);
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

    /// <summary>Reads a body up to <paramref name="limit"/> bytes; past it: MalformedResponse, or the first bytes when truncating.</summary>
    private static async Task<byte[]> ReadBoundedAsync(HttpContent content, int limit, CancellationToken cancellationToken, bool truncate = false)
    {
        if (content.Headers.ContentLength is { } declared && declared > limit && !truncate)
            throw new InferenceException(InferenceErrorKind.MalformedResponse, $"The model server's answer is larger than {limit} bytes.");
        var stream = await content.ReadAsStreamAsync(cancellationToken);
        await using var streamScope = stream;
        var buffer = new ArrayBufferWriter<byte>();
        while (true)
        {
            var memory = buffer.GetMemory(8192);
            var read = await stream.ReadAsync(memory, cancellationToken);
            if (read == 0) break;
            buffer.Advance(read);
            if (buffer.WrittenCount > limit)
            {
                if (truncate) return buffer.WrittenSpan[..limit].ToArray();
                throw new InferenceException(InferenceErrorKind.MalformedResponse, $"The model server's answer is larger than {limit} bytes.");
            }
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Runs one I/O step and turns transport failures into typed errors.</summary>
    private async Task<T> GuardAsync<T>(Func<Task<T>> step, IdleTimeout idle, CancellationToken callerToken)
    {
        try
        {
            return await step();
        }
        catch (OperationCanceledException e) when (callerToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("The inference request was cancelled.", e, callerToken);
        }
        catch (OperationCanceledException e) when (idle.TimedOut)
        {
            throw new InferenceException(InferenceErrorKind.Timeout,
                $"The model server at {_root} did not answer within {idle.Timeout}.", innerException: e);
        }
        catch (HttpRequestException e)
        {
            throw new InferenceException(InferenceErrorKind.EngineUnavailable,
                $"Cannot reach the model server at {_root}: {e.Message}", innerException: e);
        }
        catch (IOException e)
        {
            throw new InferenceException(InferenceErrorKind.EngineUnavailable,
                $"The connection to the model server at {_root} broke: {e.Message}", innerException: e);
        }
    }

    private IReadOnlyList<ModelInfo> ParseModelList(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array)
                throw Malformed("The model server's model list has no 'data' array.");
            var names = new List<string>();
            foreach (var entry in data.EnumerateArray())
            {
                if (entry.ValueKind == JsonValueKind.Object && entry.TryGetProperty("id", out var id)
                    && id.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(id.GetString()))
                    names.Add(id.GetString()!);
            }
            return [.. names.Distinct(StringComparer.Ordinal).Select(ToModelInfo)];
        }
        catch (JsonException e)
        {
            throw Malformed("The model server's model list is not JSON.", e);
        }
    }

    /// <summary>One <c>chat.completion.chunk</c>: its text, and its finish reason when it has one.</summary>
    internal static (string? Content, FinishReason? Finish) ParseChunk(string data)
    {
        try
        {
            using var document = JsonDocument.Parse(data);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw Malformed("A streamed event from the model server is not a JSON object.");
            ThrowIfError(root);
            if (!TryFirstChoice(root, out var choice)) return (null, null);
            string? content = null;
            if (choice.TryGetProperty("delta", out var delta) && delta.ValueKind == JsonValueKind.Object)
                content = StringOrNull(delta, "content");
            else if (choice.TryGetProperty("text", out _))
                content = StringOrNull(choice, "text"); // completion-style servers
            return (content, FinishOf(choice));
        }
        catch (JsonException e)
        {
            throw Malformed("A streamed event from the model server is not valid JSON.", e);
        }
    }

    /// <summary>A whole <c>chat.completion</c> document, as one token that ends the stream.</summary>
    internal static GeneratedToken ParseCompletion(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw Malformed("The model server's answer is not a JSON object.");
            ThrowIfError(root);
            if (!TryFirstChoice(root, out var choice))
                throw Malformed("The model server's answer has no choices.");
            string? content = null;
            if (choice.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.Object)
                content = StringOrNull(message, "content");
            else
                content = StringOrNull(choice, "text");
            return new GeneratedToken(0, content ?? string.Empty, FinishOf(choice) ?? FinishReason.Stop);
        }
        catch (JsonException e)
        {
            throw Malformed("The model server's answer is not valid JSON.", e);
        }
    }

    private static bool TryFirstChoice(JsonElement root, out JsonElement choice)
    {
        choice = default;
        if (!root.TryGetProperty("choices", out var choices)) return false;
        if (choices.ValueKind != JsonValueKind.Array) throw Malformed("'choices' in the model server's answer is not an array.");
        if (choices.GetArrayLength() == 0) return false;
        choice = choices[0];
        if (choice.ValueKind != JsonValueKind.Object) throw Malformed("A choice in the model server's answer is not an object.");
        return true;
    }

    private static string? StringOrNull(JsonElement parent, string name)
    {
        if (!parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.String) throw Malformed($"'{name}' in the model server's answer is not a string.");
        return value.GetString();
    }

    private static FinishReason? FinishOf(JsonElement choice) => StringOrNull(choice, "finish_reason") switch
    {
        null or "" => null,
        "length" => FinishReason.Length,
        _ => FinishReason.Stop, // stop, eos, content_filter, tool_calls: the text is complete
    };

    private static void ThrowIfError(JsonElement root)
    {
        if (!root.TryGetProperty("error", out var error) || error.ValueKind == JsonValueKind.Null) return;
        var message = error.ValueKind switch
        {
            JsonValueKind.String => error.GetString(),
            JsonValueKind.Object when error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String => m.GetString(),
            _ => null,
        };
        throw new InferenceException(InferenceErrorKind.EngineError, "The model server reported an error: " + Shorten(message ?? error.GetRawText()));
    }

    private static InferenceException Malformed(string message, Exception? inner = null) =>
        new(InferenceErrorKind.MalformedResponse, message, innerException: inner);
}
