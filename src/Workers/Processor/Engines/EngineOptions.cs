namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// The <c>Engine</c> section of a processor's configuration, flat so it reads well in JSON,
/// environment variables (<c>Engine__Kind=openai</c>) and command lines:
/// <code>
/// "Engine": { "Kind": "openai", "BaseUrl": "http://127.0.0.1:11434", "Models": [ "llama3" ] }
/// "Engine": { "Kind": "llamasharp", "ModelPath": "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", "ContextLength": 4096, "Threads": 4, "MaxConcurrency": 2 }
/// </code>
/// </summary>
public sealed class EngineOptions
{
    /// <summary><c>builtin</c> (default), <c>openai</c> or <c>llamasharp</c>.</summary>
    public string Kind { get; set; } = BuiltinEngine.EngineKind;

    /// <summary>builtin: the training text file. Unset: the corpus embedded in the program.</summary>
    public string? CorpusPath { get; set; }

    /// <summary>builtin: end a generation where the model ends a paragraph (default), or run on to MaxTokens.</summary>
    public bool StopAtEndOfText { get; set; } = true;

    /// <summary>builtin: pause before each token, to pace a demo. Default none.</summary>
    public TimeSpan TokenInterval { get; set; } = TimeSpan.Zero;

    /// <summary>openai: the server's root URL, e.g. <c>http://127.0.0.1:11434</c>.</summary>
    public string? BaseUrl { get; set; }

    /// <summary>openai: bearer token for the server, if it wants one.</summary>
    public string? ApiKey { get; set; }

    /// <summary>openai: the models to serve. Empty: those the server lists.</summary>
    public List<string> Models { get; set; } = [];

    /// <summary>llamasharp: the GGUF model file.</summary>
    public string? ModelPath { get; set; }

    /// <summary>llamasharp: the name requests use. Unset: the model file's name without <c>.gguf</c>.</summary>
    public string? ModelName { get; set; }

    /// <summary>llamasharp: CPU threads per generation. Unset: llama.cpp's choice.</summary>
    public int? Threads { get; set; }

    /// <summary>llamasharp: generations at once, each with a context of its own; more requests wait. Unset: 1.</summary>
    public int? MaxConcurrency { get; set; }

    /// <summary>The most tokens one request may ask for. Unset: the engine's default (builtin 512, openai 4096, llamasharp 512).</summary>
    public int? MaxTokens { get; set; }

    /// <summary>
    /// The longest prompt, in tokens. Unset: the engine's default (builtin 2048, openai 8192).
    /// llamasharp: the context size (prompt and answer), default the model's trained length up to 4096.
    /// </summary>
    public int? ContextLength { get; set; }

    /// <summary>openai: how long the server may stay silent before the request fails with Timeout.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(100);
}
