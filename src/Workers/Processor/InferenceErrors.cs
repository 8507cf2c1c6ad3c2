using System.Globalization;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Workers.Processor;

/// <summary>Turns engine failures into the RPC status a caller can act on (docs/architecture.md).</summary>
internal static class InferenceErrors
{
    public static RpcStatusCode CodeOf(InferenceErrorKind kind) => kind switch
    {
        InferenceErrorKind.ModelNotFound => RpcStatusCode.NotFound,
        InferenceErrorKind.InvalidRequest => RpcStatusCode.InvalidArgument,
        InferenceErrorKind.EngineUnavailable => RpcStatusCode.Unavailable,
        InferenceErrorKind.MalformedResponse => RpcStatusCode.Unavailable,
        InferenceErrorKind.RateLimited => RpcStatusCode.ResourceExhausted,
        InferenceErrorKind.Unauthorized => RpcStatusCode.PermissionDenied,
        InferenceErrorKind.Timeout => RpcStatusCode.DeadlineExceeded,
        _ => RpcStatusCode.Internal,
    };

    /// <summary>The RPC error for <paramref name="e"/>, carrying the text generated before it (if any) and the engine's retry-after.</summary>
    public static RpcException ToRpc(InferenceException e, string? partialOutput)
    {
        var details = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!string.IsNullOrEmpty(partialOutput)) details[WorkerMethods.PartialOutputDetail] = partialOutput;
        if (e.RetryAfter is { } retryAfter && retryAfter >= TimeSpan.Zero)
            details[RpcException.RetryAfterKey] = ((long)Math.Ceiling(retryAfter.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture);
        return new RpcException(CodeOf(e.Kind), CallerMessageOf(e), details, e);
    }

    /// <summary>
    /// What the caller reads. Only failures of the caller's own request keep the engine's text (it
    /// names the model or the field at fault); the model server's failures get a fixed text per kind,
    /// since the engine's message may carry its URL (with any credentials in it), host names or the
    /// upstream's own error body. The processor logs the full message.
    /// </summary>
    public static string CallerMessageOf(InferenceException e) => e.Kind switch
    {
        InferenceErrorKind.ModelNotFound or InferenceErrorKind.InvalidRequest => e.Message,
        InferenceErrorKind.EngineUnavailable => "the processor's model server is unavailable",
        InferenceErrorKind.MalformedResponse => "the processor's model server gave an invalid answer",
        InferenceErrorKind.RateLimited => "the processor's model server is busy",
        InferenceErrorKind.Unauthorized => "the processor's model server refused the processor's credentials",
        InferenceErrorKind.Timeout => "the processor's model server did not answer in time",
        _ => "the processor's model server reported an error",
    };

    /// <summary>An engine failure nobody typed: the caller learns only that it failed, and what it got before.</summary>
    public static RpcException Internal(string? partialOutput)
    {
        var details = string.IsNullOrEmpty(partialOutput)
            ? null
            : new Dictionary<string, string>(StringComparer.Ordinal) { [WorkerMethods.PartialOutputDetail] = partialOutput };
        return new RpcException(RpcStatusCode.Internal, "the inference engine failed", details);
    }

    public static RpcException Invalid(string message) => new(RpcStatusCode.InvalidArgument, message);
}
