using System.Globalization;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Client.OpenAi;

/// <summary>
/// A failure as OpenAI's API reports it: an HTTP status and <c>{"error":{"message","type","code","param"}}</c>,
/// with <c>Retry-After</c> on 429 and 503 when the network said how long to wait.
/// </summary>
internal sealed class OpenAiError(int status, string type, string code, string message, string? param = null, TimeSpan? retryAfter = null)
    : Exception(message)
{
    public int Status { get; } = status;

    public string Type { get; } = type;

    public string Code { get; } = code;

    public string? Param { get; } = param;

    public TimeSpan? RetryAfter { get; } = retryAfter;

    /// <summary>Whole seconds, rounded up: a client that waits this long is never early.</summary>
    public string? RetryAfterHeader => RetryAfter is { } wait ? Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture) : null;

    public static OpenAiError BadRequest(string message, string? param = null) => new(400, "invalid_request_error", "invalid_request", message, param);

    public static OpenAiError NotFound(string message) => new(404, "invalid_request_error", "not_found", message);

    /// <summary>What a caller is told of an unexpected failure: a fixed text naming the request id, as the RPC server's <c>InternalMessage</c>.</summary>
    public static string InternalMessage(string? requestId) =>
        string.IsNullOrEmpty(requestId) ? "internal error" : $"internal error (request {requestId})";

    /// <summary>
    /// What a caller is told when a value of its request was refused below our own validation (an
    /// <see cref="ArgumentException"/> from the SDK or a library): a 400, since a value of the request
    /// is the likely cause, with a fixed text naming the request id. The exception's own message can
    /// name paths, settings or the value itself, so it goes to the log only.
    /// </summary>
    public static OpenAiError RefusedValue(string? requestId) => BadRequest(
        string.IsNullOrEmpty(requestId)
            ? "the request holds a value that could not be sent to the network"
            : $"the request holds a value that could not be sent to the network (request {requestId}; the reason is in the server's log)");

    /// <summary>What an error of the network means to an OpenAI client.</summary>
    public static OpenAiError From(RpcException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var retryAfter = RetryAfterOf(e);
        return e.Code switch
        {
            RpcStatusCode.InvalidArgument => new(400, "invalid_request_error", "invalid_request", e.Message),
            RpcStatusCode.NotFound => new(404, "invalid_request_error", "model_not_found", e.Message, "model"),
            RpcStatusCode.Unauthenticated => new(401, "authentication_error", "invalid_api_key", e.Message),
            RpcStatusCode.PermissionDenied => new(403, "permission_error", "permission_denied", e.Message),
            RpcStatusCode.ResourceExhausted => new(429, "rate_limit_error", "rate_limit_exceeded", e.Message, null, retryAfter),
            RpcStatusCode.Unavailable => new(503, "server_error", "service_unavailable", e.Message, null, retryAfter),
            RpcStatusCode.DeadlineExceeded => new(504, "server_error", "timeout", e.Message),
            RpcStatusCode.Cancelled => new(499, "server_error", "cancelled", e.Message),
            _ => new(500, "server_error", "internal_error", e.Message),
        };
    }

    /// <summary>The retry-after of the error, also when topic routing wrapped the provider's error in its own.</summary>
    private static TimeSpan? RetryAfterOf(RpcException e)
    {
        for (Exception? current = e; current is not null; current = current.InnerException)
        {
            if (current is RpcException { RetryAfter: { } wait }) return wait;
        }
        return null;
    }
}
