namespace P2PInference.Workers.Processor.Engines;

/// <summary>One model the builtin engine serves: a view of the trained counts with its own order.</summary>
public sealed class BuiltinModelOptions
{
    public string Name { get; set; } = BuiltinEngineOptions.DefaultModelName;

    public string Description { get; set; } = "Word trigram model trained at start-up on the shipped corpus.";

    /// <summary>n of the n-gram: 1 (unigram) to <see cref="BuiltinEngineOptions.MaxOrder"/>.</summary>
    public int Order { get; set; } = 3;

    /// <summary>The longest prompt accepted, in words and punctuation marks.</summary>
    public int ContextLength { get; set; } = 2048;

    public int MaxOutputTokens { get; set; } = 512;
}
