namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// The seam between a processor and whatever produces tokens: the embedded n-gram model, or an
/// OpenAI-compatible model server. A processor serves the models an engine lists.
/// </summary>
public interface IInferenceEngine : IDisposable
{
    /// <summary>The engine kind as written in configuration: <c>builtin</c> or <c>openai</c>.</summary>
    string Kind { get; }

    /// <summary>The models this engine serves. May be empty until <see cref="InitializeAsync"/> ran.</summary>
    IReadOnlyList<ModelInfo> Models { get; }

    /// <summary>
    /// Gets the engine ready to serve (e.g. asks a model server for its models). Idempotent.
    /// Throws <see cref="InferenceException"/> when the engine cannot be reached.
    /// </summary>
    Task InitializeAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Streams the generated tokens of one request, one element per token as it is produced. A
    /// stream that ends normally ends with a token whose <see cref="GeneratedToken.FinishReason"/>
    /// is set (its text may be empty). Errors are <see cref="InferenceException"/>s; when
    /// <paramref name="cancellationToken"/> fires the engine stops working on the request and the
    /// enumeration throws <see cref="OperationCanceledException"/>.
    /// </summary>
    IAsyncEnumerable<GeneratedToken> GenerateAsync(InferenceRequest request, CancellationToken cancellationToken);
}
