using P2PInference.Workers.Auth;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Processor;

namespace P2PInference.Workers.Hosting;

/// <summary>The worker each role runs, built from its validated settings.</summary>
public static class WorkerFactory
{
    /// <summary>The worker for <see cref="WorkerSettings.Role"/>; null for a bootstrap node.</summary>
    public static IWorker? Create(WorkerSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return settings.Role switch
        {
            WorkerRole.Bootstrap => null,
            WorkerRole.Auth => new AuthWorker(settings.Auth),
            WorkerRole.Gateway => new GatewayWorker(settings.Gateway),
            WorkerRole.Processor => new ProcessorWorker(settings.Processor),
            _ => throw new ArgumentOutOfRangeException(nameof(settings), settings.Role, "unknown role"),
        };
    }
}
