using System.Runtime.CompilerServices;
using P2PInference.Facilities.Identity;

namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// The embedded default engine: a word n-gram model (backing off from the model's order down to
/// bigrams) trained when constructed from a text corpus, so demos and tests need no model server.
/// Deterministic: the same prompt, seed and temperature give the same tokens; temperature 0 is
/// greedy. Tokens are streamed one at a time and cancellation is honoured between tokens.
/// </summary>
public sealed class BuiltinEngine : IInferenceEngine
{
    public const string EngineKind = "builtin";

    /// <summary>Name of the corpus embedded in the program.</summary>
    internal const string EmbeddedCorpusName = "P2PInference.Workers.Processor.Engines.builtin.txt";

    /// <summary>A prompt is refused unread past this many characters per allowed token.</summary>
    private const int MaxCharsPerToken = 32;

    private readonly NGramModel _model;
    private readonly Dictionary<string, (ModelInfo Info, int Order)> _models;
    private readonly bool _stopAtEndOfText;
    private readonly TimeSpan _tokenInterval;
    private readonly TimeProvider _timeProvider;
    private readonly Random _seedSource;

    public BuiltinEngine(BuiltinEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var models = options.Models.Count > 0 ? options.Models.ToList() : BuiltinEngine.DefaultModels();
        var errors = Validate(options, models);
        if (errors.Count > 0) throw new EngineConfigurationException(errors);

        var corpus = LoadCorpus(options);
        try
        {
            _model = NGramModel.Train(corpus, models.Max(m => m.Order));
        }
        catch (InvalidDataException e)
        {
            throw new EngineConfigurationException([$"The builtin engine's corpus is unusable: {e.Message}"], e);
        }
        _models = models.ToDictionary(
            m => m.Name,
            m => (new ModelInfo(m.Name, m.Description, m.ContextLength, m.MaxOutputTokens), m.Order),
            StringComparer.Ordinal);
        Models = [.. models.Select(m => _models[m.Name].Info)];
        _stopAtEndOfText = options.StopAtEndOfText;
        _tokenInterval = options.TokenInterval;
        _timeProvider = options.TimeProvider ?? TimeProvider.System;
        _seedSource = options.SeedSource ?? SystemRandomSource.Instance.CreateRandom();
    }

    public string Kind => EngineKind;

    public IReadOnlyList<ModelInfo> Models { get; }

    /// <summary>Words and punctuation marks in the training corpus.</summary>
    public int CorpusTokenCount => _model.TokenCount;

    public Task InitializeAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(
        InferenceRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        request.ValidateShape();
        if (!_models.TryGetValue(request.Model, out var model))
        {
            throw new InferenceException(InferenceErrorKind.ModelNotFound,
                $"Model '{request.Model}' is not served by the builtin engine; it serves {string.Join(", ", _models.Keys)}.");
        }
        request.ValidateAgainst(model.Info);
        var prompt = request.ToPromptText();
        var (history, promptTokens) = ReadContext(prompt, model.Info.ContextLength, model.Order);
        var atLineStart = prompt.Length > 0 && char.IsWhiteSpace(prompt[^1]);

        int seed;
        if (request.Seed is { } given) seed = given;
        else lock (_seedSource) seed = _seedSource.Next();
        var random = new Random(seed);
        var stop = new StopSequenceFilter(request.Stop);
        var index = 0;

        for (var produced = 1; ; produced++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (_tokenInterval > TimeSpan.Zero)
                await Task.Delay(_tokenInterval, _timeProvider, cancellationToken);

            var token = _model.Next(history, model.Order, request.Temperature, random, request.TopP ?? 1.0);
            if (token == NGramModel.EndOfText && _stopAtEndOfText)
            {
                yield return new GeneratedToken(index, stop.Flush(), FinishReason.Stop, new TokenUsage(promptTokens, produced - 1));
                yield break;
            }

            string text;
            if (token == NGramModel.EndOfText)
            {
                text = "\n";
                atLineStart = true;
            }
            else
            {
                text = atLineStart || WordTokenizer.AttachesLeft(token) ? token : " " + token;
                atLineStart = false;
            }
            Remember(history, token, model.Order);

            var (emit, stopped) = stop.Push(text);
            if (stopped)
            {
                // The token that completed the stop sequence is not part of the answer.
                yield return new GeneratedToken(index, emit, FinishReason.Stop, new TokenUsage(promptTokens, produced - 1));
                yield break;
            }
            if (produced >= request.MaxTokens)
            {
                yield return new GeneratedToken(index, emit + stop.Flush(), FinishReason.Length, new TokenUsage(promptTokens, produced));
                yield break;
            }
            if (emit.Length > 0) yield return new GeneratedToken(index++, emit);
        }
    }

    public void Dispose()
    {
    }

    internal static List<BuiltinModelOptions> DefaultModels() => [.. BuiltinEngineOptions.DefaultModels()];

    internal static List<string> Validate(BuiltinEngineOptions options, IReadOnlyList<BuiltinModelOptions> models)
    {
        var errors = new List<string>();
        if (options.CorpusText is null && options.CorpusPath is { } path && !File.Exists(path))
            errors.Add($"Engine:CorpusPath '{path}' does not exist.");
        if (options.TokenInterval < TimeSpan.Zero)
            errors.Add("Engine:TokenInterval must not be negative.");
        else if (options.TokenInterval > Hosting.DurationLimits.MaxTimer)
            errors.Add($"Engine:TokenInterval must be at most {Hosting.DurationLimits.MaxTimer} (about 49.7 days, the longest a timer accepts; was {options.TokenInterval}).");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var m in models)
        {
            if (string.IsNullOrWhiteSpace(m.Name))
            {
                errors.Add("A builtin model has no name.");
                continue;
            }
            if (!names.Add(m.Name)) errors.Add($"Builtin model '{m.Name}' is listed twice.");
            if (m.Order is < 1 or > BuiltinEngineOptions.MaxOrder)
                errors.Add($"Builtin model '{m.Name}': Order must be 1 to {BuiltinEngineOptions.MaxOrder} (was {m.Order}).");
            if (m.ContextLength < 1)
                errors.Add($"Builtin model '{m.Name}': ContextLength must be at least 1 (was {m.ContextLength}).");
            if (m.MaxOutputTokens < 1)
                errors.Add($"Builtin model '{m.Name}': MaxOutputTokens must be at least 1 (was {m.MaxOutputTokens}).");
        }
        return errors;
    }

    /// <summary>
    /// Checks the prompt's length, bounded before any allocation, and returns its last words
    /// (lower-cased) as the context to continue from, and how many words it has (its prompt tokens).
    /// </summary>
    private static (List<string> History, int Tokens) ReadContext(string prompt, int contextLength, int order)
    {
        if ((long)prompt.Length > (long)contextLength * MaxCharsPerToken)
            throw PromptTooLong(contextLength);
        var keep = Math.Max(order - 1, 0);
        var recent = new Queue<(int Start, int Length)>(keep + 1);
        var count = 0;
        var position = 0;
        while (WordTokenizer.Next(prompt, ref position, out var start, out var length))
        {
            if (++count > contextLength) throw PromptTooLong(contextLength);
            if (keep == 0) continue;
            recent.Enqueue((start, length));
            if (recent.Count > keep) recent.Dequeue();
        }
        return ([.. recent.Select(r => prompt.Substring(r.Start, r.Length).ToLowerInvariant())], count);
    }

    private static void Remember(List<string> history, string token, int order)
    {
        history.Add(token.ToLowerInvariant());
        if (history.Count > order) history.RemoveAt(0);
    }

    private static InferenceException PromptTooLong(int contextLength) =>
        new(InferenceErrorKind.InvalidRequest, $"The prompt is too long: this model reads at most {contextLength} tokens.");

    private static string LoadCorpus(BuiltinEngineOptions options)
    {
        if (options.CorpusText is { } text) return text;
        if (options.CorpusPath is { } path)
        {
            var info = new FileInfo(path);
            if (info.Length > BuiltinEngineOptions.MaxCorpusBytes)
                throw new EngineConfigurationException([$"Engine:CorpusPath '{path}' is larger than {BuiltinEngineOptions.MaxCorpusBytes} bytes."]);
            return File.ReadAllText(path);
        }
        using var stream = typeof(BuiltinEngine).Assembly.GetManifestResourceStream(EmbeddedCorpusName)
            ?? throw new InvalidOperationException($"The embedded corpus '{EmbeddedCorpusName}' is missing from the build.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
