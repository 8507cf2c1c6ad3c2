namespace P2PInference.Workers.Processor;

/// <summary>The processor's configuration cannot work; <see cref="Errors"/> lists every problem, one sentence each.</summary>
public sealed class ProcessorConfigurationException : Exception
{
    public ProcessorConfigurationException(IReadOnlyList<string> errors, Exception? innerException = null)
        : base("Invalid processor configuration: " + string.Join(" ", errors), innerException)
    {
        Errors = errors;
    }

    public IReadOnlyList<string> Errors { get; }
}
