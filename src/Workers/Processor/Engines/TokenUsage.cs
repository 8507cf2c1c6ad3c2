namespace P2PInference.Workers.Processor.Engines;

/// <summary>What one generation cost, in the engine's own tokens: the input it read and the tokens it produced.</summary>
public sealed record TokenUsage(int PromptTokens, int CompletionTokens);
