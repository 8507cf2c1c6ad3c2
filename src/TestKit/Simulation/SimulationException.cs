namespace P2PInference.TestKit.Simulation;

/// <summary>A simulation run failed in a way the executor detected; the message carries the seed to replay it.</summary>
public class SimulationException : Exception
{
    public SimulationException(string message, int seed, ulong traceHash, Exception? inner = null)
        : base(message, inner)
    {
        Seed = seed;
        TraceHash = traceHash;
    }

    public int Seed { get; }

    public ulong TraceHash { get; }
}
