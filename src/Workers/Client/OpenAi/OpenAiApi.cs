using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Workers.Client.OpenAi;

/// <summary>
/// The handlers of <c>client serve</c>: <c>/v1/chat/completions</c>, <c>/v1/completions</c> (both
/// unary and <c>stream: true</c> as server-sent events ending in <c>data: [DONE]</c>) and
/// <c>/v1/models</c>, forwarded over the network by a <see cref="P2PInferenceClient"/>. A request's
/// <c>Authorization: Bearer KEY</c> is used as the network API key for that request; without one,
/// the client's own credentials (the profile's) are. The HTTP request's abort token is the call's
/// cancellation, so a client that hangs up cancels the request at the gateway and the processor.
/// Every request first passes <paramref name="guard"/>, which keeps web pages out.
/// </summary>
internal sealed class OpenAiApi(P2PInferenceClient client, TimeProvider time, ILogger logger, OpenAiGuard guard)
{
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public Task ChatCompletionsAsync(HttpContext context) => CompleteAsync(context, chat: true);

    public Task CompletionsAsync(HttpContext context) => CompleteAsync(context, chat: false);

    public async Task ModelsAsync(HttpContext context)
    {
        if (guard.Refusal(context, hasBody: false) is { } refusal)
        {
            await WriteErrorAsync(context, refusal);
            return;
        }
        try
        {
            var models = await ClientFor(context).ModelsAsync(context.RequestAborted);
            await WriteJsonAsync(context, 200, OpenAiJson.Models(models, Now()));
        }
        catch (Exception e) when (ErrorOf(e, context) is { } error)
        {
            await WriteErrorAsync(context, error);
        }
        catch (OperationCanceledException) when (ClientWentAway(context))
        {
            LogClientWentAway(context);
        }
    }

    /// <summary>Any other path or method: OpenAI's 404 shape, so clients print a useful message.</summary>
    public Task NotFoundAsync(HttpContext context) =>
        WriteErrorAsync(context, guard.Refusal(context, hasBody: false) ?? OpenAiError.NotFound($"{context.Request.Method} {context.Request.Path} is not served here; try /v1/chat/completions, /v1/completions or /v1/models"));

    private async Task CompleteAsync(HttpContext context, bool chat)
    {
        if (guard.Refusal(context, hasBody: true) is { } refusal)
        {
            await WriteErrorAsync(context, refusal);
            return;
        }
        OpenAiRequest request;
        try
        {
            request = await ReadAsync(context, chat);
        }
        catch (OpenAiError error)
        {
            await WriteErrorAsync(context, error);
            return;
        }
        var caller = ClientFor(context);
        try
        {
            if (request.Stream) await StreamAsync(context, caller, request, chat);
            else
            {
                var response = await caller.InferAsync(request.Inference, context.RequestAborted);
                await WriteJsonAsync(context, 200, OpenAiJson.Completion(chat, response, Now()));
            }
        }
        catch (Exception e) when (ErrorOf(e, context) is { } error)
        {
            // A response already under way cannot change its status; the connection just ends.
            if (context.Response.HasStarted) return;
            await WriteErrorAsync(context, error);
        }
        catch (OperationCanceledException) when (ClientWentAway(context))
        {
            LogClientWentAway(context);
        }
    }

    private async Task StreamAsync(HttpContext context, P2PInferenceClient caller, OpenAiRequest request, bool chat)
    {
        var created = Now();
        await using var chunks = caller.InferStreamAsync(request.Inference, context.RequestAborted).GetAsyncEnumerator(context.RequestAborted);
        // The first chunk decides the status: a request refused before any text gets a proper HTTP error.
        if (!await chunks.MoveNextAsync()) throw new RpcException(RpcStatusCode.Internal, "the stream ended without a chunk");
        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/event-stream; charset=utf-8";
        context.Response.Headers.CacheControl = "no-cache";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var model = request.Inference.Model;
        var first = true;
        InferChunk last;
        try
        {
            do
            {
                last = chunks.Current;
                await WriteEventAsync(context, OpenAiJson.Chunk(chat, last, model, created, first));
                first = false;
            }
            while (await chunks.MoveNextAsync());
        }
        catch (Exception e) when (ErrorOf(e, context) is { } error)
        {
            // Mid-stream there is no status to set: the error goes as the last event, without [DONE].
            await WriteEventAsync(context, OpenAiJson.Error(error));
            return;
        }
        if (request.IncludeUsage) await WriteEventAsync(context, OpenAiJson.UsageChunk(chat, last, model, created));
        await context.Response.Body.WriteAsync(Done, context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static async Task<OpenAiRequest> ReadAsync(HttpContext context, bool chat)
    {
        if (context.Request.ContentLength is > OpenAiRequest.MaxBodyBytes)
            throw OpenAiError.BadRequest($"the body is larger than {OpenAiRequest.MaxBodyBytes} bytes");
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(new BoundedStream(context.Request.Body, OpenAiRequest.MaxBodyBytes),
                new JsonDocumentOptions { MaxDepth = 32 }, context.RequestAborted);
        }
        catch (JsonException e)
        {
            throw OpenAiError.BadRequest("the body is not valid JSON: " + e.Message);
        }
        catch (InvalidDataException e)
        {
            throw OpenAiError.BadRequest(e.Message);
        }
        using (document)
        {
            return chat ? OpenAiRequest.ParseChat(document.RootElement) : OpenAiRequest.ParseCompletion(document.RootElement);
        }
    }

    /// <summary>The client that calls for this request: with its Bearer key as the API key, else ours.</summary>
    private P2PInferenceClient ClientFor(HttpContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        if (header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) && header[Scheme.Length..].Trim() is { Length: > 0 } key)
            return client.WithApiKey(key);
        return client;
    }

    /// <summary>
    /// The OpenAI error for a failure; null for the caller hanging up, which needs no answer. Used in
    /// exception filters, which run again at every enclosing try the exception passes: so the hang-up is
    /// logged by the handler's own outermost catch, once (<see cref="LogClientWentAway"/>), not here.
    /// </summary>
    private OpenAiError? ErrorOf(Exception e, HttpContext context)
    {
        switch (e)
        {
            case OperationCanceledException when ClientWentAway(context):
                return null;
            case OpenAiError error:
                return error;
            case RpcException rpc:
                var mapped = OpenAiError.From(rpc);
                logger.LogInformation("{Method} {Path}: {Status} {Code}: {Message}", context.Request.Method, context.Request.Path, mapped.Status, rpc.Code, rpc.Message);
                return mapped;
            case ArgumentException:
                // Our own validation throws OpenAiError; this came from below it, and its message is not for the caller.
                logger.LogWarning(e, "{Method} {Path}: a value was refused (request {RequestId})", context.Request.Method, context.Request.Path, context.TraceIdentifier);
                return OpenAiError.RefusedValue(context.TraceIdentifier);
            default:
                // An untyped exception's message can name files, hosts or internal state: it stays in our
                // log with the request's id, and the caller gets a fixed text naming that id.
                var requestId = context.TraceIdentifier;
                logger.LogError(e, "{Method} {Path} failed (request {RequestId})", context.Request.Method, context.Request.Path, requestId);
                return new OpenAiError(500, "server_error", "internal_error", OpenAiError.InternalMessage(requestId));
        }
    }

    private static bool ClientWentAway(HttpContext context) => context.RequestAborted.IsCancellationRequested;

    private void LogClientWentAway(HttpContext context) =>
        logger.LogInformation("{Method} {Path}: the HTTP client went away; the request is cancelled", context.Request.Method, context.Request.Path);

    private long Now() => time.GetUtcNow().ToUnixTimeSeconds();

    private static async Task WriteErrorAsync(HttpContext context, OpenAiError error)
    {
        if (error.RetryAfterHeader is { } retryAfter) context.Response.Headers.RetryAfter = retryAfter;
        await WriteJsonAsync(context, error.Status, OpenAiJson.Error(error));
    }

    private static async Task WriteJsonAsync(HttpContext context, int status, byte[] json)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = json.Length;
        await context.Response.Body.WriteAsync(json, context.RequestAborted);
    }

    private static async Task WriteEventAsync(HttpContext context, byte[] json)
    {
        var body = context.Response.Body;
        await body.WriteAsync(DataPrefix, context.RequestAborted);
        await body.WriteAsync(json, context.RequestAborted);
        await body.WriteAsync(EventEnd, context.RequestAborted);
        await body.FlushAsync(context.RequestAborted);
    }

    /// <summary>Reads at most <paramref name="limit"/> bytes of a body whose length was not declared.</summary>
    private sealed class BoundedStream(Stream inner, long limit) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("read asynchronously");

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            _read += n;
            if (_read > limit) throw new InvalidDataException($"the body is larger than {limit} bytes");
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
