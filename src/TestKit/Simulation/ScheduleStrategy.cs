namespace P2PInference.TestKit.Simulation;

/// <summary>Which ready work item a <see cref="SimulationExecutor"/> runs next.</summary>
public enum ScheduleStrategy
{
    /// <summary>In the order the items became ready: the schedule production code mostly sees.</summary>
    Fifo,

    /// <summary>Any ready item, chosen uniformly from the seed: explores interleavings.</summary>
    Random,

    /// <summary>
    /// Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): every logical flow (an async
    /// method's state machine, a timer) gets a seeded priority, the highest ready one runs, and at
    /// <see cref="SimulationOptions.PctDepth"/> − 1 seeded steps the running flow drops to the lowest
    /// priority. Finds bugs that need a few specific orderings with a known probability.
    /// </summary>
    Pct,
}
