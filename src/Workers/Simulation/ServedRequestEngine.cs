using System.Runtime.CompilerServices;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Workers.Simulation;

/// <summary>
/// The processors' engine, counting the generations that ran to their end per request tag (a word the
/// simulated clients put in each prompt): a tag finished twice is a request served twice.
/// </summary>
internal sealed class ServedRequestEngine(IInferenceEngine inner) : IInferenceEngine
{
    public const string TagPrefix = "rq";

    private readonly Dictionary<string, int> _served = new(StringComparer.Ordinal);

    public string Kind => inner.Kind;

    public IReadOnlyList<ModelInfo> Models => inner.Models;

    /// <summary>Tags served more than once, with how often.</summary>
    public IEnumerable<KeyValuePair<string, int>> ServedMoreThanOnce => _served.Where(p => p.Value > 1);

    public int Served => _served.Count;

    public Task InitializeAsync(CancellationToken cancellationToken) => inner.InitializeAsync(cancellationToken);

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(InferenceRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var token in inner.GenerateAsync(request, cancellationToken))
        {
            if (token.FinishReason is not null && TagOf(request.ToPromptText()) is { } tag)
                _served[tag] = _served.GetValueOrDefault(tag) + 1;
            yield return token;
        }
    }

    /// <summary>The tag word (<c>rq…</c>) at the end of a prompt, if any.</summary>
    internal static string? TagOf(string prompt)
    {
        var space = prompt.LastIndexOf(' ');
        var last = space < 0 ? prompt : prompt[(space + 1)..];
        return last.StartsWith(TagPrefix, StringComparison.Ordinal) ? last : null;
    }

    // The trained model is shared by every processor and outlives their restarts.
    public void Dispose()
    {
    }
}
