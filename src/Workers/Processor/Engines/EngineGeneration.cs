namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// One generation as the engines that run or forward a real model (openai, llamasharp) use it:
/// every knob in one place, read from the public <see cref="InferenceRequest"/> by <see cref="From"/>,
/// so a field the contract gains is plumbed through here once.
/// </summary>
internal sealed record EngineGeneration(
    string Model,
    string? Prompt,
    IReadOnlyList<ChatMessage> Messages,
    int MaxTokens,
    double Temperature,
    double? TopP,
    int? Seed,
    IReadOnlyList<string> Stop)
{
    /// <summary>The prompt was given as chat messages (rather than a plain text to continue).</summary>
    public bool IsChat => Prompt is null;

    public static EngineGeneration From(InferenceRequest request) => new(
        request.Model,
        request.Messages is { Count: > 0 } ? null : request.Prompt ?? string.Empty,
        request.ToMessages(),
        request.MaxTokens,
        request.Temperature,
        request.TopP,
        request.Seed,
        request.Stop ?? []);

    /// <summary>The last token of a stream, with the tokens the generation read and wrote as the engine counted them.</summary>
    public static GeneratedToken Finish(int index, string text, FinishReason reason, TokenUsage? usage) =>
        new(index, text, reason, usage);
}
