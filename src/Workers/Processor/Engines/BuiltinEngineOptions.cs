namespace P2PInference.Workers.Processor.Engines;

/// <summary>Settings of <see cref="BuiltinEngine"/>.</summary>
public sealed class BuiltinEngineOptions
{
    public const string DefaultModelName = "builtin-small";
    public const int MaxOrder = 6;

    /// <summary>A corpus larger than this is refused, so a wrong path cannot eat the memory.</summary>
    public const long MaxCorpusBytes = 16 * 1024 * 1024;

    /// <summary>The training text file. Null: the corpus embedded in the program (fixtures/test-data/corpus/builtin.txt).</summary>
    public string? CorpusPath { get; set; }

    /// <summary>Training text given directly (tests); wins over <see cref="CorpusPath"/>.</summary>
    public string? CorpusText { get; set; }

    /// <summary>The models served. Empty: <c>builtin-small</c> (trigram) and <c>builtin-tiny</c> (bigram).</summary>
    public IList<BuiltinModelOptions> Models { get; set; } = [];

    /// <summary>
    /// True: a generation ends (FinishReason.Stop) where the model ends a paragraph. False: it
    /// starts a new paragraph and runs on to MaxTokens or a stop sequence.
    /// </summary>
    public bool StopAtEndOfText { get; set; } = true;

    /// <summary>Pause before each token, to pace a demo like a real model. Zero (default): none.</summary>
    public TimeSpan TokenInterval { get; set; } = TimeSpan.Zero;

    /// <summary>The clock for <see cref="TokenInterval"/>. Null: <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider? TimeProvider { get; set; }

    /// <summary>Draws a seed for requests that give none. Null: seeded once from the OS.</summary>
    public Random? SeedSource { get; set; }

    internal static IReadOnlyList<BuiltinModelOptions> DefaultModels() =>
    [
        new BuiltinModelOptions(),
        new BuiltinModelOptions
        {
            Name = "builtin-tiny",
            Description = "Word bigram model trained at start-up on the shipped corpus: looser, more surprising text.",
            Order = 2,
        },
    ];
}
