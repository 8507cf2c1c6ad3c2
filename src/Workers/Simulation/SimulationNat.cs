namespace P2PInference.Workers.Simulation;

/// <summary>Whether the processors of a <see cref="NetworkSimulation"/> sit behind NAT routers, and of which kind.</summary>
public enum SimulationNat
{
    /// <summary>Every node is public.</summary>
    None,

    /// <summary>Each processor behind a port-restricted cone NAT (the common home router).</summary>
    Cone,

    /// <summary>Each processor behind a symmetric NAT (hole punching cannot get through; only the relay can).</summary>
    Symmetric,
}
