namespace P2PInference.TestKit.Simulation;

/// <summary>One entry of the run queue: a posted callback, a task or a due timer.</summary>
internal readonly record struct SimulationWorkItem(
    SimulationStepKind Kind,
    SendOrPostCallback? Callback,
    object? State,
    Task? Task,
    SimulationTimer? Timer,
    long TimerGeneration = 0)
{
    /// <summary>
    /// The logical flow the item continues, for PCT priorities: an await continuation's state machine
    /// box (the posted delegate's target), the task, or the timer.
    /// </summary>
    public object FlowKey => Kind switch
    {
        SimulationStepKind.Task => Task!,
        SimulationStepKind.Timer => Timer!,
        _ => State switch
        {
            Delegate { Target: { } target } => target,
            { } state => state,
            _ => (object?)Callback!.Target ?? Callback!,
        },
    };

    /// <summary>
    /// The type whose code the step runs: stable across processes, unlike object identity, and
    /// whether or not a tool traces tasks (see <see cref="SimulationCodeType"/>).
    /// </summary>
    public Type CodeType => Kind switch
    {
        SimulationStepKind.Task => SimulationCodeType.Of(Task!.GetType()),
        SimulationStepKind.Timer => Timer!.CallbackType,
        _ => State switch
        {
            Delegate d => SimulationCodeType.Of(d),
            { } state => SimulationCodeType.Of(state.GetType()),
            _ => Callback!.Method.DeclaringType ?? typeof(SendOrPostCallback),
        },
    };
}
