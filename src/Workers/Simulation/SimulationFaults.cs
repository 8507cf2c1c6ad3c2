namespace P2PInference.Workers.Simulation;

/// <summary>The kinds of fault a <see cref="NetworkSimulation"/> may inject; none by default.</summary>
[Flags]
public enum SimulationFaults
{
    None = 0,

    /// <summary>A worker node dies without a goodbye and restarts later with the same identity and store.</summary>
    Crash = 1,

    /// <summary>Traffic between two nodes stalls or is reset, then heals.</summary>
    Partition = 2,

    /// <summary>A node's links slow down (latency and jitter), then recover.</summary>
    Latency = 4,

    /// <summary>A node's clock jumps and drifts against the others.</summary>
    Skew = 8,
}
