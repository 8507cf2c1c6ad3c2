namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// One streamed piece of generated text. <paramref name="Index"/> counts the pieces of one
/// generation from 0. <paramref name="FinishReason"/> is set on the last piece only, and so is
/// <paramref name="Usage"/>, when the engine can count tokens (the processor counts the pieces otherwise).
/// </summary>
public sealed record GeneratedToken(int Index, string Text, FinishReason? FinishReason = null, TokenUsage? Usage = null);
