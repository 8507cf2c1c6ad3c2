namespace P2PInference.Workers.Contracts.Inference;

/// <summary>
/// Why a generation ended, as <see cref="InferResponse.FinishReason"/> and the last
/// <see cref="InferChunk.FinishReason"/> carry it: OpenAI's two values for text. A generation that
/// does not end this way has no finish reason: a cancelled call ends as a cancelled RPC, a failed one
/// with an error status, and streams end without a last chunk.
/// </summary>
public static class FinishReasons
{
    /// <summary>The model ended, or a stop sequence was reached.</summary>
    public const string Stop = "stop";

    /// <summary>The max tokens budget was used up.</summary>
    public const string Length = "length";
}
