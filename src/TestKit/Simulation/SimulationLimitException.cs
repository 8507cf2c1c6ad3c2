namespace P2PInference.TestKit.Simulation;

/// <summary>The run went past <see cref="SimulationOptions.MaxVirtualTime"/> or <see cref="SimulationOptions.MaxSteps"/>.</summary>
public sealed class SimulationLimitException(string message, int seed, ulong traceHash)
    : SimulationException(message, seed, traceHash);
