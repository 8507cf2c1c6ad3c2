namespace P2PInference.TestKit.Simulation;

/// <summary>What a step of the simulation ran; part of the trace hash.</summary>
public enum SimulationStepKind
{
    /// <summary>A callback posted to the simulation's <see cref="SynchronizationContext"/> (await continuations).</summary>
    Post = 1,

    /// <summary>A task queued to the simulation's <see cref="TaskScheduler"/>.</summary>
    Task = 2,

    /// <summary>A timer of the simulation clock that came due.</summary>
    Timer = 3,

    /// <summary>The result of an outside operation (<see cref="SimulationExecutor.RunOutsideAsync{T}"/>) re-entering the simulation.</summary>
    Outside = 4,
}
