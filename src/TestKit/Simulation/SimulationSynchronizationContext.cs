namespace P2PInference.TestKit.Simulation;

/// <summary>
/// Sends every await continuation that captures it back to its executor's one run queue. Installed
/// on the executor's thread while a run is in progress.
/// </summary>
public sealed class SimulationSynchronizationContext : SynchronizationContext
{
    internal SimulationSynchronizationContext(SimulationExecutor executor) => Executor = executor;

    public SimulationExecutor Executor { get; }

    public override void Post(SendOrPostCallback d, object? state)
    {
        ArgumentNullException.ThrowIfNull(d);
        Executor.Enqueue(new SimulationWorkItem(SimulationStepKind.Post, d, state, null, null));
    }

    /// <summary>Runs inline on the simulation thread; from any other thread it would block on the simulation, which is refused.</summary>
    public override void Send(SendOrPostCallback d, object? state)
    {
        ArgumentNullException.ThrowIfNull(d);
        if (!Executor.IsSimulationThread)
            throw new InvalidOperationException("Send from outside the simulation thread would block on the simulation; use Post");
        d(state);
    }

    // One context per executor: copies would break reference comparisons the runtime makes (await inlining).
    public override SynchronizationContext CreateCopy() => this;
}
