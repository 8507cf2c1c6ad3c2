namespace P2PInference.Workers.Hosting;

/// <summary>Where a worker's configuration comes from, lowest precedence first: defaults, files, environment, command line.</summary>
public sealed record WorkerConfigurationSources
{
    public const string EnvironmentPrefix = "P2PINFERENCE_";

    /// <summary>The environment variable naming the environment (<c>appsettings.{Environment}.json</c>).</summary>
    public const string EnvironmentVariable = EnvironmentPrefix + "ENVIRONMENT";

    /// <summary>The API key <c>p2pinference client</c> reads (<c>Cli.ClientCommand.ApiKeyVariable</c>); not a worker setting.</summary>
    public const string ClientApiKeyVariable = EnvironmentPrefix + "API_KEY";

    /// <summary>
    /// The <see cref="EnvironmentPrefix"/> variables that are not settings, all in one place: the
    /// environment name, and the client's own variables, which a machine running both the client and
    /// a worker sets for the client. Every other <c>P2PINFERENCE_*</c> variable is a setting, and an
    /// unknown one is still refused.
    /// </summary>
    public static readonly IReadOnlyList<string> NotSettings = [EnvironmentVariable, ClientApiKeyVariable];

    /// <summary>A JSON file that must exist (<c>--config PATH</c>); it overrides the environment-specific file.</summary>
    public string? ConfigPath { get; init; }

    /// <summary>E.g. Development: loads <c>appsettings.Development.json</c> from <see cref="BaseDirectory"/> if present. Null: from <see cref="EnvironmentVariable"/>.</summary>
    public string? Environment { get; init; }

    /// <summary>Where <c>appsettings.{Environment}.json</c> is looked for; null: the current directory.</summary>
    public string? BaseDirectory { get; init; }

    /// <summary>
    /// Environment variables; those starting with <see cref="EnvironmentPrefix"/> (except <see cref="NotSettings"/>) are settings, with
    /// <c>__</c> between section and key (<c>P2PINFERENCE_NODE__DATADIR</c>). Null: the process's.
    /// </summary>
    public IReadOnlyDictionary<string, string?>? EnvironmentVariables { get; init; }

    /// <summary><c>--data-dir</c>.</summary>
    /// <summary><c>--grant</c>: overrides <c>Trust:Grant</c>.</summary>
    public string? Grant { get; init; }

    /// <summary><c>--cluster-key</c>: overrides <c>Trust:ClusterKey</c>.</summary>
    public string? ClusterKey { get; init; }

    public string? DataDir { get; init; }

    /// <summary><c>--listen</c>, repeatable; replaces the configured list when given.</summary>
    public IReadOnlyList<string>? Listen { get; init; }

    /// <summary><c>--bootstrap</c>, repeatable; replaces the configured list when given.</summary>
    public IReadOnlyList<string>? Bootstrap { get; init; }

    /// <summary>Further settings by path (<c>Auth:PasswordIterations</c>), above everything else.</summary>
    public IReadOnlyDictionary<string, string?>? Overrides { get; init; }
}
