namespace P2PInference.TestKit.Simulation;

/// <summary>
/// A timer of the <see cref="SimulationClock"/>: a due time in the clock's queue, and a callback that runs as a step of the run queue, under the execution
/// context of the code that created the timer (as <see cref="System.Threading.Timer"/> does).
/// </summary>
internal sealed class SimulationTimer : ITimer
{
    private readonly SimulationClock _clock;
    private readonly SimulationExecutor _executor;
    private readonly TimerCallback _callback;
    private readonly object? _state;
    private readonly ExecutionContext? _context;
    private long _version;
    private long _generation;
    private long _periodTicks;
    private long _dueTicks = long.MaxValue;
    private bool _disposed;

    public SimulationTimer(SimulationClock clock, SimulationExecutor executor, TimerCallback callback, object? state)
    {
        _clock = clock;
        _executor = executor;
        _callback = callback;
        _state = state;
        _context = ExecutionContext.Capture();
    }

    public Type CallbackType => _callback.Target?.GetType() ?? _callback.Method.DeclaringType ?? typeof(TimerCallback);

    public bool IsCurrent(long version) => !_disposed && version == _version && _dueTicks != long.MaxValue;

    public bool Change(TimeSpan dueTime, TimeSpan period)
    {
        _executor.CheckThread("change a timer of the simulation clock");
        if (_disposed) return false;
        SimulationClock.Validate(dueTime, period);
        Arm(dueTime, period);
        return true;
    }

    /// <summary>Puts the timer in the clock's queue at its new due time; a new generation voids callbacks already queued.</summary>
    public void Arm(TimeSpan dueTime, TimeSpan period)
    {
        _generation++;
        _version++;
        _periodTicks = period <= TimeSpan.Zero ? 0 : period.Ticks;
        if (dueTime == Timeout.InfiniteTimeSpan)
        {
            _dueTicks = long.MaxValue;
            return;
        }
        _dueTicks = _clock.NowTicks + dueTime.Ticks;
        _clock.Track(this, _version, _dueTicks);
    }

    /// <summary>Time reached its due time: queue the callback and re-arm a periodic timer one period on.</summary>
    public void OnDue()
    {
        _version++;
        if (_periodTicks > 0 && !_disposed)
        {
            _dueTicks += _periodTicks;
            _clock.Track(this, _version, _dueTicks);
        }
        else
        {
            _dueTicks = long.MaxValue;
        }
        _clock.NoteFired();
        _executor.Enqueue(new SimulationWorkItem(SimulationStepKind.Timer, null, null, null, this, _generation));
    }

    /// <summary>Runs the callback unless the timer was changed or disposed after it came due.</summary>
    public void Run(long generation)
    {
        if (_disposed || generation != _generation) return;
        if (_context is null) _callback(_state);
        else ExecutionContext.Run(_context, static s => { var t = (SimulationTimer)s!; t._callback(t._state); }, this);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _generation++;
        _dueTicks = long.MaxValue;
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
