namespace P2PInference.TestKit.Simulation;

/// <summary>Queues tasks to its executor's one run queue; inlines only on the simulation thread.</summary>
public sealed class SimulationTaskScheduler : TaskScheduler
{
    internal SimulationTaskScheduler(SimulationExecutor executor) => Executor = executor;

    public SimulationExecutor Executor { get; }

    public override int MaximumConcurrencyLevel => 1;

    internal bool Execute(Task task) => TryExecuteTask(task);

    protected override void QueueTask(Task task) =>
        Executor.Enqueue(new SimulationWorkItem(SimulationStepKind.Task, null, null, task, null));

    protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) =>
        !taskWasPreviouslyQueued && Executor.IsSimulationThread && TryExecuteTask(task);

    protected override IEnumerable<Task> GetScheduledTasks() => Executor.ScheduledTasks();
}
