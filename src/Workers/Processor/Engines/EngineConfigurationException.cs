namespace P2PInference.Workers.Processor.Engines;

/// <summary>The engine configuration cannot work; <see cref="Errors"/> lists every problem found, one sentence each.</summary>
public sealed class EngineConfigurationException : Exception
{
    public EngineConfigurationException(IReadOnlyList<string> errors, Exception? innerException = null)
        : base("Invalid inference engine configuration: " + string.Join(" ", errors), innerException)
    {
        Errors = errors;
    }

    public IReadOnlyList<string> Errors { get; }
}
