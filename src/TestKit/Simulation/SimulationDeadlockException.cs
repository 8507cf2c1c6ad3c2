namespace P2PInference.TestKit.Simulation;

/// <summary>Nothing is runnable, no timer is pending and no outside operation is in flight, yet the run's task has not finished.</summary>
public sealed class SimulationDeadlockException(string message, int seed, ulong traceHash)
    : SimulationException(message, seed, traceHash);
