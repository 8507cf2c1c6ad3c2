namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// What went wrong, in terms a caller can act on. Each maps onto an RPC status
/// (docs/architecture.md) as noted.
/// </summary>
public enum InferenceErrorKind
{
    /// <summary>The engine does not serve the requested model (RPC <c>NotFound</c>).</summary>
    ModelNotFound,

    /// <summary>The request is malformed or out of range: empty prompt, max tokens, temperature, prompt too long (RPC <c>InvalidArgument</c>).</summary>
    InvalidRequest,

    /// <summary>The engine cannot be reached or failed on its side: connection refused, HTTP 5xx (RPC <c>Unavailable</c>).</summary>
    EngineUnavailable,

    /// <summary>The model server refuses for now: HTTP 429 (RPC <c>ResourceExhausted</c>).</summary>
    RateLimited,

    /// <summary>The model server refused our credentials: HTTP 401/403 (RPC <c>PermissionDenied</c>).</summary>
    Unauthorized,

    /// <summary>The engine's own time limit passed without an answer (RPC <c>DeadlineExceeded</c>).</summary>
    Timeout,

    /// <summary>The model server answered with something that is not a valid response (RPC <c>Unavailable</c>).</summary>
    MalformedResponse,

    /// <summary>Any other failure reported by the model server (RPC <c>Internal</c>).</summary>
    EngineError,
}
