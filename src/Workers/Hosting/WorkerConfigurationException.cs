namespace P2PInference.Workers.Hosting;

/// <summary>
/// A worker's configuration cannot be used. <see cref="Errors"/> holds every mistake found, one
/// clear line each (the setting's path, the bad value, what is expected); the message lists them all.
/// </summary>
public sealed class WorkerConfigurationException : Exception
{
    public WorkerConfigurationException(IReadOnlyList<string> errors, Exception? innerException = null)
        : base(Format(errors), innerException)
    {
        Errors = errors;
    }

    public IReadOnlyList<string> Errors { get; }

    private static string Format(IReadOnlyList<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        return errors.Count == 1
            ? "invalid configuration: " + errors[0]
            : $"invalid configuration ({errors.Count} mistakes):" + string.Concat(errors.Select(e => Environment.NewLine + "  " + e));
    }
}
