namespace P2PInference.TestKit.Simulation;

/// <summary>How a <see cref="SimulationExecutor"/> runs; the seed decides everything else.</summary>
public sealed record SimulationOptions
{
    public int Seed { get; init; }

    public ScheduleStrategy Strategy { get; init; } = ScheduleStrategy.Fifo;

    /// <summary>Where the simulation clock starts.</summary>
    public DateTimeOffset Start { get; init; } = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// The run fails with <see cref="SimulationLimitException"/> rather than move the clock beyond
    /// this much virtual time after <see cref="Start"/>: periodic timers (keep-alives, maintenance)
    /// would otherwise turn a hung simulation into an endless one.
    /// </summary>
    public TimeSpan MaxVirtualTime { get; init; } = TimeSpan.FromDays(1);

    /// <summary>The run fails with <see cref="SimulationLimitException"/> after this many steps (a livelock guard).</summary>
    public long MaxSteps { get; init; } = 100_000_000;

    /// <summary>The environment variable that sets <see cref="TraceDumpPath"/> for every simulation of a process.</summary>
    public const string TraceDumpVariable = "P2P_TRACE_DUMP";

    /// <summary>
    /// A file that receives one line per step as it is folded into the trace hash — step index, kind,
    /// virtual time (ticks), ready items, index chosen, node ("-" for none), trace hash so far, code
    /// type — so that the dumps of two processes that reported different hashes for a seed can be
    /// diffed to the first step that differs. Null (default: <see cref="TraceDumpVariable"/>) for none.
    /// Each simulation writes the file afresh: set it for one simulation at a time (one test, one row).
    /// </summary>
    public string? TraceDumpPath { get; init; } = Environment.GetEnvironmentVariable(TraceDumpVariable) is { Length: > 0 } path ? path : null;

    /// <summary>PCT's bug depth d: d − 1 priority change points.</summary>
    public int PctDepth { get; init; } = 3;

    /// <summary>PCT's estimate of the run's length in steps; change points fall below it.</summary>
    public int PctStepBound { get; init; } = 10_000;
}
