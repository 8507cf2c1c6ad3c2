namespace P2PInference.Workers.Processor.Engines;

/// <summary>Why a generation ended.</summary>
public enum FinishReason
{
    /// <summary>The model reached a natural end, or a stop sequence was produced.</summary>
    Stop,

    /// <summary>The request's maximum number of tokens was reached.</summary>
    Length,
}
