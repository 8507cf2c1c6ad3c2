namespace P2PInference.Workers.Hosting;

/// <summary>
/// A worker's business logic, run by the worker runtime: on start it registers its RPC handlers
/// on <see cref="WorkerContext.Server"/> and says which topics to announce; the runtime announces
/// them, and on stop unannounces, drains calls in flight, then stops the worker.
/// </summary>
public interface IWorker
{
    /// <summary>auth, gateway or processor.</summary>
    string Role { get; }

    /// <summary>Registers handlers and starts background work; returns the topics to announce.</summary>
    Task<IReadOnlyList<string>> StartAsync(WorkerContext context, CancellationToken cancellationToken);

    /// <summary>Stops background work; calls in flight were already drained.</summary>
    Task StopAsync(CancellationToken cancellationToken);
}
