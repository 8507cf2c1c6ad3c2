using Microsoft.Extensions.Configuration;

namespace P2PInference.Workers.Processor.Engines;

/// <summary>Builds the engine a processor's configuration asks for, with readable errors for bad configuration.</summary>
public static class InferenceEngineFactory
{
    public const string SectionName = "Engine";

    private static readonly string[] Kinds = [BuiltinEngine.EngineKind, OpenAiCompatibleEngine.EngineKind, LlamaSharpEngine.EngineKind];

    /// <summary>
    /// Reads <see cref="EngineOptions"/> from a configuration section (usually <c>Engine</c>).
    /// Unknown keys and values of the wrong type are errors, so a typo does not silently fall
    /// back to a default. Throws <see cref="EngineConfigurationException"/>.
    /// </summary>
    public static EngineOptions Bind(IConfiguration section)
    {
        ArgumentNullException.ThrowIfNull(section);
        var options = new EngineOptions();
        try
        {
            section.Bind(options, binder => binder.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidOperationException e)
        {
            throw new EngineConfigurationException([e.Message], e);
        }
        return options;
    }

    /// <summary>Every problem with <paramref name="options"/>, one sentence each; empty when they can work.</summary>
    public static IReadOnlyList<string> Validate(EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var kind = options.Kind?.Trim().ToLowerInvariant();
        if (kind == BuiltinEngine.EngineKind)
        {
            var builtin = ToBuiltinOptions(options);
            var errors = BuiltinEngine.Validate(builtin, builtin.Models.ToList());
            if (options.Models.Count > 0)
                errors.Add("Engine:Models applies to the openai engine; the builtin engine serves builtin-small and builtin-tiny.");
            return errors;
        }
        if (kind == OpenAiCompatibleEngine.EngineKind)
        {
            var errors = new List<string>();
            Uri? url = null;
            if (!string.IsNullOrWhiteSpace(options.BaseUrl) && !Uri.TryCreate(options.BaseUrl.Trim(), UriKind.Absolute, out url))
                errors.Add($"Engine:BaseUrl '{OpenAiCompatibleEngine.WithoutCredentials(options.BaseUrl)}' is not an absolute http or https URL.");
            if (errors.Count == 0)
                errors.AddRange(OpenAiCompatibleEngine.Validate(ToOpenAiOptions(options, url)));
            return errors;
        }
        if (kind == LlamaSharpEngine.EngineKind)
        {
            var errors = LlamaSharpEngine.Validate(ToLlamaSharpOptions(options));
            if (options.Models.Count > 0)
                errors.Add("Engine:Models applies to the openai engine; the llamasharp engine serves its one model file (name it with Engine:ModelName).");
            return errors;
        }
        return [string.IsNullOrWhiteSpace(options.Kind)
            ? $"Engine:Kind is empty; use one of: {string.Join(", ", Kinds)}."
            : $"Engine:Kind '{options.Kind}' is not known; use one of: {string.Join(", ", Kinds)}."];
    }

    /// <summary>Binds, validates and builds the engine of a configuration section.</summary>
    public static IInferenceEngine Create(IConfiguration section, TimeProvider? timeProvider = null) =>
        Create(Bind(section), timeProvider);

    /// <summary>
    /// Builds the engine <paramref name="options"/> describe; throws
    /// <see cref="EngineConfigurationException"/> listing every problem.
    /// </summary>
    /// <param name="httpMessageHandler">openai: the HTTP stack to use (tests); not disposed by the engine.</param>
    /// <param name="seedSource">builtin, llamasharp: draws seeds for requests without one.</param>
    public static IInferenceEngine Create(
        EngineOptions options,
        TimeProvider? timeProvider = null,
        HttpMessageHandler? httpMessageHandler = null,
        Random? seedSource = null)
    {
        var errors = Validate(options);
        if (errors.Count > 0) throw new EngineConfigurationException(errors);
        if (options.Kind.Trim().Equals(BuiltinEngine.EngineKind, StringComparison.OrdinalIgnoreCase))
        {
            var builtin = ToBuiltinOptions(options);
            builtin.TimeProvider = timeProvider;
            builtin.SeedSource = seedSource;
            return new BuiltinEngine(builtin);
        }
        if (options.Kind.Trim().Equals(LlamaSharpEngine.EngineKind, StringComparison.OrdinalIgnoreCase))
        {
            var llama = ToLlamaSharpOptions(options);
            llama.SeedSource = seedSource;
            return new LlamaSharpEngine(llama);
        }
        var openAi = ToOpenAiOptions(options, new Uri(options.BaseUrl!.Trim(), UriKind.Absolute));
        openAi.TimeProvider = timeProvider;
        openAi.HttpMessageHandler = httpMessageHandler;
        return new OpenAiCompatibleEngine(openAi);
    }

    private static BuiltinEngineOptions ToBuiltinOptions(EngineOptions options)
    {
        var models = BuiltinEngine.DefaultModels();
        foreach (var model in models)
        {
            if (options.MaxTokens is { } max) model.MaxOutputTokens = max;
            if (options.ContextLength is { } context) model.ContextLength = context;
        }
        return new BuiltinEngineOptions
        {
            CorpusPath = string.IsNullOrWhiteSpace(options.CorpusPath) ? null : options.CorpusPath,
            Models = models,
            StopAtEndOfText = options.StopAtEndOfText,
            TokenInterval = options.TokenInterval,
        };
    }

    private static LlamaSharpEngineOptions ToLlamaSharpOptions(EngineOptions options)
    {
        var result = new LlamaSharpEngineOptions
        {
            ModelPath = string.IsNullOrWhiteSpace(options.ModelPath) ? null : options.ModelPath.Trim(),
            ModelName = options.ModelName,
            ContextSize = options.ContextLength,
            Threads = options.Threads,
        };
        if (options.MaxConcurrency is { } concurrency) result.MaxConcurrency = concurrency;
        if (options.MaxTokens is { } max) result.MaxOutputTokens = max;
        return result;
    }

    private static OpenAiCompatibleEngineOptions ToOpenAiOptions(EngineOptions options, Uri? baseUrl)
    {
        var result = new OpenAiCompatibleEngineOptions
        {
            BaseUrl = baseUrl,
            ApiKey = options.ApiKey,
            Models = [.. options.Models],
            Timeout = options.Timeout,
        };
        if (options.MaxTokens is { } max) result.MaxOutputTokens = max;
        if (options.ContextLength is { } context) result.ContextLength = context;
        return result;
    }
}
