namespace P2PInference.Workers.Processor.Engines;

/// <summary>Settings of <see cref="LlamaSharpEngine"/>.</summary>
public sealed class LlamaSharpEngineOptions
{
    /// <summary>The GGUF model file, e.g. <c>~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf</c>.</summary>
    public string? ModelPath { get; set; }

    /// <summary>The name requests use. Null: the file name without <c>.gguf</c>.</summary>
    public string? ModelName { get; set; }

    /// <summary>Tokens of context per request (prompt and answer together). Null: the model's trained length, at most 4096.</summary>
    public int? ContextSize { get; set; }

    /// <summary>CPU threads per generation. Null: llama.cpp's choice (the machine's cores).</summary>
    public int? Threads { get; set; }

    /// <summary>Generations run at once; each holds a context (memory) of its own. Further requests wait for a free one.</summary>
    public int MaxConcurrency { get; set; } = 1;

    /// <summary>The most tokens one request may ask for.</summary>
    public int MaxOutputTokens { get; set; } = 512;

    /// <summary>Draws a seed for requests without one. Null: seeded once from the OS.</summary>
    public Random? SeedSource { get; set; }
}
