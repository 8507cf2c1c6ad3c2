namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// One generation request. Give either <see cref="Prompt"/> (plain text to continue) or
/// <see cref="Messages"/> (a chat); when both are given the messages win.
/// </summary>
public sealed record InferenceRequest
{
    public const double MaxTemperature = 2.0;
    public const int MaxStopSequences = 4;
    public const int MaxStopSequenceLength = 64;

    public required string Model { get; init; }

    public string? Prompt { get; init; }

    public IReadOnlyList<ChatMessage>? Messages { get; init; }

    /// <summary>The most tokens to generate: 1 up to the model's <see cref="ModelInfo.MaxOutputTokens"/>.</summary>
    public int MaxTokens { get; init; } = 128;

    /// <summary>0 picks the likeliest token every time (greedy); up to 2 flattens the choice.</summary>
    public double Temperature { get; init; } = 0.8;

    /// <summary>Nucleus sampling: draw only from the likeliest tokens whose probabilities add up to this (0 exclusive to 1). Null: 1.</summary>
    public double? TopP { get; init; }

    /// <summary>Same seed, prompt and temperature give the same tokens (where the engine can promise it). Null: the engine picks.</summary>
    public int? Seed { get; init; }

    /// <summary>Up to <see cref="MaxStopSequences"/> strings; generation ends before the first of them would be emitted.</summary>
    public IReadOnlyList<string>? Stop { get; init; }

    /// <summary>The chat as messages: <see cref="Messages"/>, or the prompt as one user message.</summary>
    public IReadOnlyList<ChatMessage> ToMessages() =>
        Messages is { Count: > 0 } ? Messages : [new ChatMessage("user", Prompt ?? string.Empty)];

    /// <summary>The chat as one text to continue: the prompt, or the messages' contents one per line.</summary>
    public string ToPromptText() =>
        Messages is { Count: > 0 } ? string.Join('\n', Messages.Select(m => m.Content)) : Prompt ?? string.Empty;

    /// <summary>
    /// The checks every engine makes before doing any work. Throws
    /// <see cref="InferenceException"/> with <see cref="InferenceErrorKind.InvalidRequest"/>.
    /// </summary>
    internal void ValidateShape()
    {
        if (string.IsNullOrWhiteSpace(Model))
            throw Invalid("The model name is empty.");
        if (Messages is { Count: > 0 })
        {
            foreach (var message in Messages)
            {
                if (message is null || string.IsNullOrWhiteSpace(message.Role))
                    throw Invalid("A chat message has no role.");
                if (message.Content is null)
                    throw Invalid("A chat message has no content.");
            }
            if (Messages.All(m => string.IsNullOrWhiteSpace(m.Content)))
                throw Invalid("The prompt is empty.");
        }
        else if (string.IsNullOrWhiteSpace(Prompt))
        {
            throw Invalid("The prompt is empty.");
        }
        if (MaxTokens < 1)
            throw Invalid($"MaxTokens must be at least 1 (was {MaxTokens}).");
        if (!double.IsFinite(Temperature) || Temperature < 0 || Temperature > MaxTemperature)
            throw Invalid($"Temperature must be between 0 and {MaxTemperature} (was {Temperature}).");
        if (TopP is { } topP && (!double.IsFinite(topP) || topP <= 0 || topP > 1))
            throw Invalid($"TopP must be greater than 0 and at most 1 (was {topP}).");
        if (Stop is { } stop)
        {
            if (stop.Count > MaxStopSequences)
                throw Invalid($"At most {MaxStopSequences} stop sequences are allowed (got {stop.Count}).");
            foreach (var s in stop)
            {
                if (string.IsNullOrEmpty(s) || s.Length > MaxStopSequenceLength)
                    throw Invalid($"Each stop sequence must be 1 to {MaxStopSequenceLength} characters long.");
            }
        }
    }

    /// <summary>Checks that depend on the model: the output budget.</summary>
    internal void ValidateAgainst(ModelInfo model)
    {
        if (MaxTokens > model.MaxOutputTokens)
            throw Invalid($"MaxTokens must be at most {model.MaxOutputTokens} for model '{model.Name}' (was {MaxTokens}).");
    }

    private static InferenceException Invalid(string message) => new(InferenceErrorKind.InvalidRequest, message);
}
