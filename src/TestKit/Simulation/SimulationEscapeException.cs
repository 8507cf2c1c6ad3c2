namespace P2PInference.TestKit.Simulation;

/// <summary>
/// Work reached the simulation from another thread, or code on another thread used the simulation
/// clock: something escaped the executor (<c>ConfigureAwait(false)</c>, <c>Task.Run</c>, a thread-pool
/// timer, real I/O not registered as an outside operation), so the run cannot replay.
/// </summary>
public sealed class SimulationEscapeException(string message, int seed, ulong traceHash)
    : SimulationException(message, seed, traceHash);
