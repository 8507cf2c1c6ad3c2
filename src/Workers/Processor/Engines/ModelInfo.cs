namespace P2PInference.Workers.Processor.Engines;

/// <summary>A model an engine serves.</summary>
/// <param name="Name">The name requests use, e.g. <c>builtin-small</c> or <c>llama3</c>.</param>
/// <param name="Description">One line for humans.</param>
/// <param name="ContextLength">The longest prompt accepted, in the model's tokens.</param>
/// <param name="MaxOutputTokens">The most tokens one request may ask for.</param>
public sealed record ModelInfo(string Name, string Description, int ContextLength, int MaxOutputTokens);
