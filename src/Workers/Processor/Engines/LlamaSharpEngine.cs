using System.Runtime.CompilerServices;
using LLama;
using LLama.Common;
using LLama.Exceptions;
using LLama.Native;
using LLama.Sampling;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Threading;

namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// Runs a GGUF model in-process with LLamaSharp on llama.cpp's CPU backend. Each of
/// <see cref="LlamaSharpEngineOptions.MaxConcurrency"/> slots holds its own context; a request takes
/// a free slot (or waits for one, cancellably), decodes its prompt, then samples and streams one
/// token at a time until the model's end-of-generation token, a stop sequence, MaxTokens or the end
/// of the context.
/// </summary>
/// <remarks>
/// A real-time component: LLamaSharp runs each decode (the heavy native call) on the thread pool
/// itself and awaits without the caller's context, so simulated tests use the builtin engine or a
/// double. What runs on the caller's thread is short: tokenizing, sampling one token, clearing a
/// context. Loading the model and creating the contexts happen once, in <see cref="InitializeAsync"/>.
/// </remarks>
public sealed class LlamaSharpEngine : IInferenceEngine
{
    public const string EngineKind = "llamasharp";

    /// <summary>The context size used when the model's trained length is larger (memory grows with it).</summary>
    public const int DefaultMaxContextSize = 4096;

    private readonly string _modelPath;
    private readonly string _modelName;
    private readonly int? _contextSize;
    private readonly int? _threads;
    private readonly int _maxConcurrency;
    private readonly int _maxOutputTokens;
    private readonly Random _seedSource;
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _initializing = new(1, 1);
    private readonly Stack<LLamaContext> _freeContexts = new();
    private LLamaWeights? _weights;
    private volatile IReadOnlyList<ModelInfo> _models = [];
    private int _inFlight;
    private bool _disposed;

    public LlamaSharpEngine(LlamaSharpEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = Validate(options);
        if (errors.Count > 0) throw new EngineConfigurationException(errors);
        _modelPath = Path.GetFullPath(options.ModelPath!);
        _modelName = string.IsNullOrWhiteSpace(options.ModelName) ? DefaultModelName(_modelPath) : options.ModelName.Trim();
        _contextSize = options.ContextSize;
        _threads = options.Threads;
        _maxConcurrency = options.MaxConcurrency;
        _maxOutputTokens = options.MaxOutputTokens;
        _seedSource = options.SeedSource ?? SystemRandomSource.Instance.CreateRandom();
        _slots = new SemaphoreSlim(_maxConcurrency, _maxConcurrency);
    }

    public string Kind => EngineKind;

    /// <summary>The one model of the file; empty until <see cref="InitializeAsync"/> loaded it.</summary>
    public IReadOnlyList<ModelInfo> Models => _models;

    /// <summary>
    /// Loads the model file and creates one context per concurrency slot. Throws
    /// <see cref="InferenceException"/> (<see cref="InferenceErrorKind.EngineUnavailable"/>) when the file
    /// is not a model llama.cpp can load, or the CPU backend cannot run on this machine.
    /// </summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await _initializing.EnterAsync(cancellationToken);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_weights is not null) return;
            LlamaNative.EnsureLoaded();
            var parameters = new ModelParams(_modelPath)
            {
                GpuLayerCount = 0,
                Threads = _threads,
                BatchThreads = _threads,
            };
            LLamaWeights weights;
            LlamaNative.LastMessages.Clear();
            try
            {
                weights = await LLamaWeights.LoadFromFileAsync(parameters, cancellationToken);
            }
            catch (Exception e) when (e is LoadWeightsFailedException or RuntimeError or IOException)
            {
                var said = LlamaNative.LastMessages.Snapshot();
                throw new InferenceException(InferenceErrorKind.EngineUnavailable,
                    $"llama.cpp cannot load the model file '{Path.GetFileName(_modelPath)}': {e.Message}"
                    + (said.Length > 0 ? $" (llama.cpp said: {said})" : string.Empty), innerException: e);
            }
            try
            {
                var trained = weights.ContextSize > 0 ? weights.ContextSize : DefaultMaxContextSize;
                var contextSize = _contextSize ?? Math.Min(trained, DefaultMaxContextSize);
                parameters.ContextSize = (uint)contextSize;
                parameters.BatchSize = (uint)Math.Min(contextSize, 512);
                parameters.UBatchSize = parameters.BatchSize;
                for (var i = 0; i < _maxConcurrency; i++) _freeContexts.Push(weights.CreateContext(parameters));
                _models = [new ModelInfo(_modelName, $"GGUF model {Path.GetFileName(_modelPath)}, run in-process by llama.cpp on the CPU.",
                    contextSize, Math.Min(_maxOutputTokens, contextSize - 1))];
                lock (_freeContexts)
                {
                    if (!_disposed) _weights = weights;
                }
                if (_weights is null)
                {
                    DisposeContexts();
                    weights.Dispose();
                    throw new ObjectDisposedException(nameof(LlamaSharpEngine));
                }
            }
            catch (Exception e) when (e is RuntimeError or InvalidOperationException)
            {
                DisposeContexts();
                weights.Dispose();
                throw new InferenceException(InferenceErrorKind.EngineUnavailable,
                    $"llama.cpp cannot create a context for '{Path.GetFileName(_modelPath)}': {e.Message}", innerException: e);
            }
        }
        finally
        {
            _initializing.Release();
        }
    }

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(
        InferenceRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        request.ValidateShape();
        if (_weights is null) await InitializeAsync(cancellationToken);
        var model = _models[0];
        if (request.Model != model.Name)
        {
            throw new InferenceException(InferenceErrorKind.ModelNotFound,
                $"Model '{request.Model}' is not served by the llamasharp engine; it serves {model.Name}.");
        }
        request.ValidateAgainst(model);
        var generation = EngineGeneration.From(request);
        int seed;
        if (generation.Seed is { } given) seed = given;
        else lock (_seedSource) seed = _seedSource.Next();

        await _slots.EnterAsync(cancellationToken);
        LLamaContext context;
        lock (_freeContexts)
        {
            if (_disposed)
            {
                _slots.Release();
                throw new ObjectDisposedException(nameof(LlamaSharpEngine));
            }
            context = _freeContexts.Pop();
            _inFlight++;
        }
        try
        {
            await foreach (var token in GenerateInAsync(context, generation, seed, cancellationToken))
                yield return token;
        }
        finally
        {
            // No native work is running here: the iterator only stops at a yield or after an awaited decode.
            // The next request must not see this one's tokens.
            context.NativeHandle.MemoryClear();
            bool release;
            lock (_freeContexts)
            {
                _freeContexts.Push(context);
                release = --_inFlight == 0 && _disposed;
            }
            _slots.Release();
            if (release) ReleaseNative();
        }
    }

    /// <summary>The prompt as the model reads it, split into its tokens' text (for tests and diagnostics).</summary>
    internal IReadOnlyList<string> TokenPieces(string text)
    {
        var weights = _weights ?? throw new InvalidOperationException("The model is not loaded yet.");
        var decoder = new StreamingTokenDecoder(System.Text.Encoding.UTF8, weights);
        var pieces = new List<string>();
        foreach (var token in weights.Tokenize(text, add_bos: false, special: false, System.Text.Encoding.UTF8))
        {
            decoder.Add(token);
            pieces.Add(decoder.Read());
        }
        return pieces;
    }

    /// <summary>Frees the model and its contexts now, or when the last generation in flight ends (native memory must outlive its users).</summary>
    public void Dispose()
    {
        bool release;
        lock (_freeContexts)
        {
            if (_disposed) return;
            _disposed = true;
            release = _inFlight == 0;
        }
        if (release) ReleaseNative();
    }

    private void ReleaseNative()
    {
        DisposeContexts();
        _weights?.Dispose();
    }

    internal static List<string> Validate(LlamaSharpEngineOptions options)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.ModelPath))
            errors.Add("Engine:ModelPath is required when Engine:Kind is 'llamasharp' (a .gguf model file).");
        else if (!File.Exists(options.ModelPath))
            errors.Add($"Engine:ModelPath '{options.ModelPath}' does not exist.");
        if (options.ContextSize is < 16)
            errors.Add($"Engine:ContextLength must be at least 16 (was {options.ContextSize}).");
        if (options.Threads is < 1)
            errors.Add($"Engine:Threads must be at least 1 (was {options.Threads}).");
        if (options.MaxConcurrency < 1)
            errors.Add($"Engine:MaxConcurrency must be at least 1 (was {options.MaxConcurrency}).");
        if (options.MaxOutputTokens < 1)
            errors.Add($"Engine:MaxTokens must be at least 1 (was {options.MaxOutputTokens}).");
        return errors;
    }

    private static string DefaultModelName(string path)
    {
        var name = Path.GetFileName(path);
        return name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? name[..^5] : name;
    }

    private async IAsyncEnumerable<GeneratedToken> GenerateInAsync(
        LLamaContext context, EngineGeneration generation, int seed, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var weights = _weights!;
        var prompt = generation.IsChat ? ApplyChatTemplate(weights, generation.Messages) : generation.Prompt!;
        var promptTokens = context.Tokenize(prompt, addBos: true, special: true).ToList();
        // llama.cpp may round a context up; the limit is the configured one, as the model list says.
        var contextSize = Math.Min((int)context.ContextSize, _models[0].ContextLength);
        if (promptTokens.Count >= contextSize)
        {
            throw new InferenceException(InferenceErrorKind.InvalidRequest,
                $"The prompt is too long: {promptTokens.Count} tokens, and this model reads at most {contextSize - 1}.");
        }

        using var sampler = CreateSampler(generation, seed);
        var batch = new LLamaBatch();
        var (_, _, position) = await DecodeOrThrowAsync(context.DecodeAsync(promptTokens, LLamaSeqId.Zero, batch, 0, cancellationToken));
        var decoder = new StreamingTokenDecoder(context);
        var stop = new StopSequenceFilter(generation.Stop);
        var index = 0;
        for (var produced = 1; ; produced++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var token = sampler.Sample(context.NativeHandle, batch.TokenCount - 1);
            var usage = new TokenUsage(promptTokens.Count, produced);
            if (token.IsEndOfGeneration(weights.Vocab))
            {
                yield return EngineGeneration.Finish(index, decoder.Read() + stop.Flush(), FinishReason.Stop, usage with { CompletionTokens = produced - 1 });
                yield break;
            }
            decoder.Add(token);
            var (emit, stopped) = stop.Push(decoder.Read());
            if (stopped)
            {
                yield return EngineGeneration.Finish(index, emit, FinishReason.Stop, usage);
                yield break;
            }
            if (produced >= generation.MaxTokens || position + 1 >= contextSize)
            {
                yield return EngineGeneration.Finish(index, emit + stop.Flush(), FinishReason.Length, usage);
                yield break;
            }
            if (emit.Length > 0) yield return new GeneratedToken(index++, emit);

            batch.Clear();
            batch.Add(token, position++, LLamaSeqId.Zero, true);
            var result = await context.DecodeAsync(batch, cancellationToken);
            if (result != DecodeResult.Ok) throw DecodeFailed(result);
        }
    }

    private static async Task<(DecodeResult, int, int)> DecodeOrThrowAsync(Task<(DecodeResult Result, int Count, int Position)> decoding)
    {
        var outcome = await decoding;
        if (outcome.Result != DecodeResult.Ok) throw DecodeFailed(outcome.Result);
        return outcome;
    }

    private static InferenceException DecodeFailed(DecodeResult result) =>
        new(InferenceErrorKind.EngineError, $"llama.cpp failed to decode: {result}.");

    /// <summary>The chat in the model's own template (from its GGUF metadata); a plain transcript when it has none.</summary>
    private static string ApplyChatTemplate(LLamaWeights weights, IReadOnlyList<ChatMessage> messages)
    {
        if (weights.Metadata.ContainsKey("tokenizer.chat_template"))
        {
            var template = new LLamaTemplate(weights) { AddAssistant = true };
            foreach (var message in messages) template.Add(message.Role, message.Content);
            return System.Text.Encoding.UTF8.GetString(template.Apply());
        }
        return string.Concat(messages.Select(m => $"{m.Role}: {m.Content}\n")) + "assistant:";
    }

    private static BaseSamplingPipeline CreateSampler(EngineGeneration generation, int seed) =>
        generation.Temperature <= 0
            ? new GreedySamplingPipeline()
            : new DefaultSamplingPipeline
            {
                Temperature = (float)generation.Temperature,
                TopP = (float)(generation.TopP ?? 1.0),
                Seed = unchecked((uint)seed),
            };

    private void DisposeContexts()
    {
        lock (_freeContexts)
        {
            while (_freeContexts.TryPop(out var context)) context.Dispose();
        }
    }
}
