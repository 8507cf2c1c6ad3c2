using System.Globalization;
using System.Numerics;
using System.Runtime.ExceptionServices;
using P2PInference.TestKit.Harness;

namespace P2PInference.TestKit.Simulation;

/// <summary>
/// Runs a simulation on one thread so that a seed replays it exactly. Every await continuation
/// (through <see cref="SimulationSynchronizationContext"/>), every task (through
/// <see cref="SimulationTaskScheduler"/>) and every timer of <see cref="Clock"/> becomes an item of
/// one run queue; <see cref="Strategy"/> picks the next item. Time moves only when the queue is
/// empty and no outside operation is in flight, and then jumps to the earliest due timer — idle is
/// known exactly, never guessed. Each step is folded into <see cref="TraceHash"/>.
/// </summary>
/// <remarks>
/// Code under simulation must not leave the thread: <c>ConfigureAwait(false)</c>, <c>Task.Run</c>,
/// thread-pool timers or unregistered real I/O make work arrive from other threads, which fails the
/// run with <see cref="SimulationEscapeException"/> (detected when that work posts back or touches the
/// clock). Real I/O goes through <see cref="RunOutsideAsync{T}"/>, which the executor waits for.
/// </remarks>
public sealed class SimulationExecutor
{
    private static readonly AsyncLocal<string?> s_node = new(OnNodeChanged);
    [ThreadStatic] private static SimulationExecutor? t_running;

    private readonly object _gate = new();
    private readonly SimulationRunQueue _queue;
    private readonly SimulationSynchronizationContext _context;
    private readonly SimulationTaskScheduler _scheduler;
    private readonly Dictionary<Type, ulong> _typeHashes = [];
    private readonly SimulationOptions _options;
    private readonly PriorityQueue<TaskCompletionSource, (long TargetTicks, long Sequence)> _idleWaiters = new();
    private long _idleWaiterSequence;
    private int _threadId;
    private int _outsidePending;
    private SimulationException? _escape;
    private ExceptionDispatchInfo? _stepFailure;
    private string? _stepNode;
    private StreamWriter? _traceDump;
    private bool _traceDumpStarted;

    public SimulationExecutor(int seed, ScheduleStrategy strategy = ScheduleStrategy.Fifo)
        : this(new SimulationOptions { Seed = seed, Strategy = strategy })
    {
    }

    public SimulationExecutor(SimulationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _queue = new SimulationRunQueue(options.Strategy, new Random(SeedDerivation.Int(options.Seed, "schedule")), options.PctDepth, options.PctStepBound);
        _context = new SimulationSynchronizationContext(this);
        _scheduler = new SimulationTaskScheduler(this);
        Clock = new SimulationClock(this, options.Start);
        Random = CreateRandom("simulation");
    }

    public int Seed => _options.Seed;

    public ScheduleStrategy Strategy => _options.Strategy;

    /// <summary>The simulation's one clock; give it (or a <see cref="NodeClock"/> over it) to everything simulated.</summary>
    public SimulationClock Clock { get; }

    /// <summary>Seeded randomness for the simulation's own choices. Use from the simulation thread only.</summary>
    public Random Random { get; }

    /// <summary>A rolling hash over every step run so far: its index, kind, virtual time, node, code and scheduling choice.</summary>
    public ulong TraceHash { get; private set; } = 0xcbf29ce484222325UL;

    /// <summary>Steps run so far.</summary>
    public long Steps { get; private set; }

    public SynchronizationContext SynchronizationContext => _context;

    public TaskScheduler Scheduler => _scheduler;

    /// <summary>The node the running code belongs to (see <see cref="InNode(string, Func{Task})"/>), or null.</summary>
    public static string? CurrentNode => s_node.Value;

    /// <summary>The simulation running on the calling thread, or null outside one.</summary>
    public static SimulationExecutor? Current => t_running;

    /// <summary>True on the thread that is running this simulation.</summary>
    public bool IsSimulationThread => _threadId != 0 && Environment.CurrentManagedThreadId == _threadId;

    /// <summary>Everything needed to replay and compare this run.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"seed={Seed} ({TestSeed.EnvironmentVariable}={Seed}) strategy={Strategy} trace={TraceHash:x16} steps={Steps} virtual={Clock.Elapsed}");

    /// <summary>An independent seeded stream for one purpose (a node's identity, a link…): stable for the seed and the purpose, whatever else draws.</summary>
    public Random CreateRandom(params ReadOnlySpan<string> purpose) => new(SeedDerivation.Int(Seed, ["executor", .. purpose]));

    /// <summary>A clock for one node: the simulation clock seen with its own offset and drift.</summary>
    public NodeClock CreateNodeClock(TimeSpan offset = default, double drift = 0) => new(Clock, offset, drift);

    /// <summary>Runs <paramref name="action"/> (and everything it starts) as node <paramref name="nodeName"/>: the trace records the node of each step.</summary>
    public static async Task InNode(string nodeName, Func<Task> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        s_node.Value = nodeName;
        await action();
    }

    /// <inheritdoc cref="InNode(string, Func{Task})"/>
    public static async Task<T> InNode<T>(string nodeName, Func<Task<T>> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        s_node.Value = nodeName;
        return await action();
    }

    /// <summary>
    /// The stack of the thread every run gets. The runtime runs a continuation inline only while enough
    /// of the stack is left, and queues it otherwise; on the caller's thread the schedule, and so the
    /// trace, would depend on how deep the caller is and how large its thread's stack (a test runner's
    /// worker, the CLI's main thread, a benchmark). On a thread of its own with this much, a seed
    /// replays the same trace from any of them.
    /// </summary>
    public const int ThreadStackSize = 16 * 1024 * 1024;

    /// <summary>
    /// Runs <paramref name="main"/> until its task finishes, on a thread of the simulation's own
    /// (<see cref="ThreadStackSize"/>) while the calling thread waits; work it leaves behind stays
    /// queued for the next run.
    /// </summary>
    /// <exception cref="SimulationDeadlockException">Nothing can make progress but the task is unfinished.</exception>
    /// <exception cref="SimulationEscapeException">Work escaped to another thread.</exception>
    /// <exception cref="SimulationLimitException">The virtual time or step limit was reached.</exception>
    public void Run(Func<Task> main)
    {
        ArgumentNullException.ThrowIfNull(main);
        Run(async () =>
        {
            await main();
            return true;
        });
    }

    /// <inheritdoc cref="Run(Func{Task})"/>
    public T Run<T>(Func<Task<T>> main)
    {
        ArgumentNullException.ThrowIfNull(main);
        T result = default!;
        ExceptionDispatchInfo? failure = null;
        var thread = StartRunThread(() =>
        {
            try
            {
                result = RunCore(main).GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        });
        thread.Join();
        failure?.Throw();
        return result;
    }

    /// <summary>Like <see cref="Run(Func{Task})"/>, without blocking the caller: completes when the run ends.</summary>
    public Task RunAsync(Func<Task> main) => RunAsync(async () =>
    {
        await main();
        return true;
    });

    /// <inheritdoc cref="RunAsync(Func{Task})"/>
    public Task<T> RunAsync<T>(Func<Task<T>> main)
    {
        ArgumentNullException.ThrowIfNull(main);
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        StartRunThread(() =>
        {
            try
            {
                done.SetResult(RunCore(main).GetAwaiter().GetResult());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        });
        return done.Task;
    }

    private Thread StartRunThread(ThreadStart run)
    {
        var thread = new Thread(run, ThreadStackSize)
        {
            IsBackground = true,
            Name = $"simulation seed {Seed}",
        };
        thread.Start();
        return thread;
    }

    /// <summary>
    /// Runs real, non-simulated work (file or socket I/O, a process) on the thread pool. The executor
    /// knows it is in flight — time does not move and no deadlock is reported until it finishes — and
    /// its result re-enters the simulation as one step. Its timing is real, so a run that uses it
    /// replays only as far as that work is deterministic.
    /// </summary>
    public Task<T> RunOutsideAsync<T>(Func<Task<T>> operation)
    {
        ArgumentNullException.ThrowIfNull(operation);
        CheckThread("start an outside operation");
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate) _outsidePending++;
        _ = Task.Run(operation).ContinueWith(
            completed => CompleteOutside(completed, result),
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return result.Task;
    }

    /// <inheritdoc cref="RunOutsideAsync{T}"/>
    public Task RunOutsideAsync(Func<Task> operation) => RunOutsideAsync(async () =>
    {
        await operation();
        return true;
    });

    private void CompleteOutside<T>(Task<T> completed, TaskCompletionSource<T> result)
    {
        SendOrPostCallback settle = _ =>
        {
            if (completed.IsCanceled) result.SetCanceled();
            else if (completed.Exception is { } e) result.SetException(e.InnerExceptions);
            else result.SetResult(completed.Result);
        };
        // One lock for both: the pump never sees "nothing pending" before the result is queued.
        lock (_gate)
        {
            _outsidePending--;
            _queue.Add(new SimulationWorkItem(SimulationStepKind.Outside, settle, null, null, null));
            Monitor.PulseAll(_gate);
        }
    }

    internal void Enqueue(in SimulationWorkItem item)
    {
        var foreign = _threadId != 0 && Environment.CurrentManagedThreadId != _threadId;
        lock (_gate)
        {
            _queue.Add(item);
            if (foreign)
                _escape ??= Failure<SimulationEscapeException>(
                    $"a {item.Kind} step ({item.CodeType}) was queued from thread {Environment.CurrentManagedThreadId}, not the simulation thread: "
                    + "something escaped the executor (ConfigureAwait(false), Task.Run, a thread-pool timer, unregistered I/O). "
                    + $"Queued from:\n{new System.Diagnostics.StackTrace(1, false)}");
            Monitor.PulseAll(_gate);
        }
    }

    internal IEnumerable<Task> ScheduledTasks()
    {
        lock (_gate) return [.. _queue.Tasks()];
    }

    /// <summary>Fails when called from another thread while a run is in progress.</summary>
    internal void CheckThread(string what)
    {
        if (_threadId == 0 || Environment.CurrentManagedThreadId == _threadId) return;
        var failure = Failure<SimulationEscapeException>(
            $"code on thread {Environment.CurrentManagedThreadId} tried to {what} while the simulation runs on thread {_threadId}: "
            + "something escaped the executor (ConfigureAwait(false), Task.Run, a thread-pool timer, unregistered I/O). "
            + $"Called from:\n{new System.Diagnostics.StackTrace(1, false)}");
        lock (_gate)
        {
            _escape ??= failure;
            Monitor.PulseAll(_gate);
        }
        throw failure;
    }

    internal TException Failure<TException>(string message)
        where TException : SimulationException =>
        (TException)Activator.CreateInstance(typeof(TException),
            $"{message}. Replay: {this}", Seed, TraceHash)!;

    private Task<T> RunCore<T>(Func<Task<T>> main)
    {
        if (_threadId != 0) throw new InvalidOperationException("the simulation is already running");
        var previous = SynchronizationContext.Current;
        _threadId = Environment.CurrentManagedThreadId;
        t_running = this;
        SynchronizationContext.SetSynchronizationContext(_context);
        if (_options.TraceDumpPath is { Length: > 0 } dumpPath)
        {
            // A later run of the same executor continues the file its first run started.
            _traceDump = new StreamWriter(dumpPath, append: _traceDumpStarted);
            _traceDumpStarted = true;
        }
        try
        {
            // Started as a task of the simulation's scheduler, so TaskScheduler.Current is ours too.
            var task = Task.Factory.StartNew(main, CancellationToken.None, TaskCreationOptions.DenyChildAttach, _scheduler).Unwrap();
            Pump(task);
            return task;
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
            _traceDump?.Dispose();
            _traceDump = null;
            t_running = null;
            _threadId = 0;
        }
    }

    private void Pump(Task main)
    {
        var limit = Clock.Start + _options.MaxVirtualTime;
        while (true)
        {
            SimulationWorkItem item;
            int ready, index;
            lock (_gate)
            {
                while (true)
                {
                    if (_escape is not null) throw _escape;
                    if (main.IsCompleted) return;
                    if (_queue.TryTake(out item, out ready, out index)) break;
                    if (_outsidePending == 0) break;
                    Monitor.Wait(_gate);
                }
            }
            if (index < 0)
            {
                if (TryReleaseIdleWaiter()) continue;
                if (Clock.TryAdvanceToNextDue(limit)) continue;
                throw Failure<SimulationDeadlockException>(
                    $"deadlock at virtual time {Clock.Elapsed}: nothing is runnable, no timer is armed and no outside operation is in flight, "
                    + "but the run's task has not finished (an await nothing will complete, or work that escaped to another thread)");
            }
            if (Steps >= _options.MaxSteps)
                throw Failure<SimulationLimitException>($"the run took more than {_options.MaxSteps} steps without finishing (livelock?)");
            Execute(item, ready, index);
        }
    }

    /// <summary>
    /// Completes once nothing is runnable and no outside operation is in flight, with the clock at
    /// <paramref name="targetTicks"/> (or later, when it already was): timers due up to then fire first,
    /// each followed by the work it starts. The basis of <see cref="SimulationClock.RunUntilIdleAsync"/>
    /// and <see cref="SimulationClock.AdvanceAsync(TimeSpan)"/>.
    /// </summary>
    internal Task WhenIdleAsync(long targetTicks)
    {
        CheckThread("wait for the simulation to go idle");
        if (t_running != this)
            throw new InvalidOperationException("waiting for the simulation to go idle works only inside SimulationExecutor.Run");
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _idleWaiters.Enqueue(waiter, (targetTicks, _idleWaiterSequence++));
        return waiter.Task;
    }

    /// <summary>At an idle point: releases the earliest idle waiter whose target comes before the next due timer, moving the clock to that target.</summary>
    private bool TryReleaseIdleWaiter()
    {
        if (!_idleWaiters.TryPeek(out _, out var first)) return false;
        var now = Clock.NowTicks;
        if (first.TargetTicks > now)
        {
            // Timers due at or before the target run first; equal counts as before, so AdvanceAsync(d)
            // returns after what is due exactly at now + d has run.
            if (Clock.NextDue is { } due && due.UtcTicks <= first.TargetTicks) return false;
            Clock.MoveTo(first.TargetTicks);
            now = first.TargetTicks;
        }
        var released = false;
        while (_idleWaiters.TryPeek(out var waiter, out var key) && key.TargetTicks <= now)
        {
            _idleWaiters.Dequeue();
            // Its continuation is posted to the simulation's context: a step of the queue.
            waiter.SetResult();
            released = true;
        }
        return released;
    }

    private void Execute(in SimulationWorkItem item, int ready, int index)
    {
        _stepNode = null;
        switch (item.Kind)
        {
            case SimulationStepKind.Task:
                _scheduler.Execute(item.Task!);
                break;
            case SimulationStepKind.Timer:
                Guard(static i => i.Timer!.Run(i.TimerGeneration), item);
                break;
            default:
                Guard(static i => i.Callback!(i.State), item);
                break;
        }
        var h = TraceHash;
        h = Mix(h, Steps);
        h = Mix(h, (long)item.Kind);
        h = Mix(h, Clock.NowTicks);
        h = Mix(h, ready);
        h = Mix(h, index);
        h = Mix(h, (long)HashOf(item.CodeType));
        h = Mix(h, _stepNode is null ? 0 : (long)StableHash(_stepNode));
        TraceHash = h;
        _traceDump?.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Steps} {item.Kind} {Clock.NowTicks} {ready} {index} {_stepNode ?? "-"} {h:x16} {item.CodeType.FullName}"));
        Steps++;
        if (_stepFailure is { } failure)
        {
            _stepFailure = null;
            throw new SimulationException($"a simulation step threw. Replay: {this}", Seed, TraceHash, failure.SourceException);
        }
    }

    private void Guard(Action<SimulationWorkItem> run, in SimulationWorkItem item)
    {
        try
        {
            run(item);
        }
        catch (Exception e)
        {
            // Posted callbacks and timer callbacks have nobody to report to (async void, timers):
            // the run fails, as an unhandled exception would end the process.
            _stepFailure ??= ExceptionDispatchInfo.Capture(e);
        }
    }

    private ulong HashOf(Type type)
    {
        if (!_typeHashes.TryGetValue(type, out var hash))
            _typeHashes[type] = hash = StableHash(type.FullName ?? type.Name);
        return hash;
    }

    private static ulong Mix(ulong h, long value)
    {
        // SplitMix64 finalizer over the input, folded in with a rotate-multiply: cheap, and one
        // differing step changes every later hash.
        var z = (ulong)value + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return BitOperations.RotateLeft(h ^ z, 29) * 0x100000001B3UL;
    }

    /// <summary>FNV-1a over the characters: string.GetHashCode is randomized per process.</summary>
    private static ulong StableHash(string text)
    {
        var h = 0xcbf29ce484222325UL;
        foreach (var c in text) h = (h ^ c) * 0x100000001B3UL;
        return h;
    }

    private static void OnNodeChanged(AsyncLocalValueChangedArgs<string?> change)
    {
        if (change.CurrentValue is { } node && t_running is { } executor) executor._stepNode = node;
    }
}
