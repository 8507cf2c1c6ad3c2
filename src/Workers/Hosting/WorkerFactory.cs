using P2PInference.Workers.Auth;

namespace P2PInference.Workers.Hosting;

/// <summary>The worker each role runs, built from its validated settings.</summary>
public static class WorkerFactory
{
    /// <summary>The worker for <see cref="WorkerSettings.Role"/>; null for a bootstrap node.</summary>
    public static IWorker? Create(WorkerSettings settings, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        _ = timeProvider;
        return settings.Role switch
        {
            WorkerRole.Bootstrap => null,
            WorkerRole.Auth => new AuthWorker(settings.Auth),
            _ => throw new NotSupportedException($"the {WorkerRoles.NameOf(settings.Role)} worker is not available in this build"),
        };
    }
}
