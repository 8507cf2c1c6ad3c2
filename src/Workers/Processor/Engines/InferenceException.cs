namespace P2PInference.Workers.Processor.Engines;

/// <summary>A typed failure of an inference engine; <see cref="Kind"/> says what the caller can do about it.</summary>
public sealed class InferenceException : Exception
{
    public InferenceException(InferenceErrorKind kind, string message, int? statusCode = null, Exception? innerException = null)
        : base(message, innerException)
    {
        Kind = kind;
        StatusCode = statusCode;
    }

    public InferenceErrorKind Kind { get; }

    /// <summary>The HTTP status the model server answered with, when there was one.</summary>
    public int? StatusCode { get; }

    /// <summary>How long the model server asked us to wait (HTTP 429/503 <c>Retry-After</c>), when it said.</summary>
    public TimeSpan? RetryAfter { get; init; }
}
