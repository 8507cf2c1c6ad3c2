namespace P2PInference.Workers.Processor.Engines;

/// <summary>Settings of <see cref="OpenAiCompatibleEngine"/>.</summary>
public sealed class OpenAiCompatibleEngineOptions
{
    /// <summary>
    /// The server's root, e.g. <c>http://127.0.0.1:11434</c> (Ollama) or <c>http://127.0.0.1:8080</c>
    /// (llama.cpp). A trailing <c>/v1</c> is accepted too.
    /// </summary>
    public Uri? BaseUrl { get; set; }

    /// <summary>Sent as <c>Authorization: Bearer …</c> when set.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The models to serve. Empty: whatever the server lists at <c>GET /v1/models</c>.</summary>
    public IList<string> Models { get; set; } = [];

    /// <summary>Context length reported for the models (the server enforces the real one).</summary>
    public int ContextLength { get; set; } = 8192;

    /// <summary>The most tokens one request may ask for.</summary>
    public int MaxOutputTokens { get; set; } = 4096;

    /// <summary>
    /// How long the server may stay silent: before the response headers, and between two pieces
    /// of a streamed answer. <see cref="System.Threading.Timeout.InfiniteTimeSpan"/>: forever.
    /// </summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(100);

    /// <summary>Bound on one event, one non-streamed answer, one error body or the model list.</summary>
    public int MaxResponseBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>The clock for <see cref="Timeout"/>. Null: <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider? TimeProvider { get; set; }

    /// <summary>For tests and custom stacks; the engine does not dispose it. Null: a SocketsHttpHandler of its own.</summary>
    public HttpMessageHandler? HttpMessageHandler { get; set; }
}
