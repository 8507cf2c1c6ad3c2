namespace P2PInference.Workers.Contracts.Inference;

/// <summary>
/// Why a generation ended, as <see cref="InferResponse.FinishReason"/> and the last
/// <see cref="InferChunk.FinishReason"/> carry it. Processors report <see cref="Stop"/> and
/// <see cref="Length"/>; <see cref="Cancelled"/> and <see cref="Error"/> are what a client reports
/// for a stream that the caller stopped or that failed after some text (the SDK's chat client).
/// </summary>
public static class FinishReasons
{
    /// <summary>The model ended, or a stop sequence was reached.</summary>
    public const string Stop = "stop";

    /// <summary>The max tokens budget was used up.</summary>
    public const string Length = "length";

    public const string Cancelled = "cancelled";

    public const string Error = "error";
}
