using MicrosoftFakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.TestKit.Simulation;

/// <summary>
/// The one clock of a simulation: Microsoft's <c>FakeTimeProvider</c>, extended with what the
/// executor needs. Timers are the provider's own; this clock wraps each one to learn when it is next
/// due (the provider keeps its queue private) and to turn its callback into a step of the run queue
/// instead of running it inside <c>SetUtcNow</c>. Only the executor moves the time: when nothing is
/// runnable, to the earliest due timer.
/// </summary>
/// <remarks>
/// Use it from the simulation thread only: a call from any other thread while a run is in progress
/// means something escaped the executor, and fails the run.
/// </remarks>
public sealed class SimulationClock : MicrosoftFakeTimeProvider
{
    // Same bound as the provider's own validation (milliseconds, as System.Threading.Timer).
    private const long MaxTimerMilliseconds = 0xfffffffe;

    private readonly SimulationExecutor _executor;
    private readonly PriorityQueue<(SimulationTimer Timer, long Version), (long DueTicks, long Sequence)> _due = new();
    private long _sequence;
    private long _firedDuringAdvance;

    internal SimulationClock(SimulationExecutor executor, DateTimeOffset start)
        : base(start)
    {
        _executor = executor;
    }

    /// <summary>Virtual time since the simulation started.</summary>
    public TimeSpan Elapsed => base.GetUtcNow() - Start;

    /// <summary>Timers armed and not yet due (a periodic timer counts once).</summary>
    public int PendingTimers
    {
        get
        {
            DropStale();
            var count = 0;
            foreach (var (entry, _) in _due.UnorderedItems)
                if (entry.Timer.IsCurrent(entry.Version)) count++;
            return count;
        }
    }

    public override DateTimeOffset GetUtcNow()
    {
        _executor.CheckThread("read the simulation clock");
        return base.GetUtcNow();
    }

    public override long GetTimestamp()
    {
        _executor.CheckThread("read the simulation clock");
        return base.GetTimestamp();
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        _executor.CheckThread("create a timer on the simulation clock");
        Validate(dueTime, period);
        var timer = new SimulationTimer(this, _executor, callback, state);
        // Tracked before the provider sees it: a zero due time fires inside CreateTimer.
        timer.Arm(dueTime, period);
        timer.Inner = base.CreateTimer(static s => ((SimulationTimer)s!).OnDue(), timer, dueTime, period);
        return timer;
    }

    internal static void Validate(TimeSpan dueTime, TimeSpan period)
    {
        static bool Valid(TimeSpan t) => (long)t.TotalMilliseconds is >= -1 and <= MaxTimerMilliseconds;
        if (!Valid(dueTime)) throw new ArgumentOutOfRangeException(nameof(dueTime));
        if (!Valid(period)) throw new ArgumentOutOfRangeException(nameof(period));
    }

    internal long NowTicks => base.GetUtcNow().UtcTicks;

    internal void Track(SimulationTimer timer, long version, long dueTicks) =>
        _due.Enqueue((timer, version), (dueTicks, _sequence++));

    internal void NoteFired() => _firedDuringAdvance++;

    /// <summary>When the earliest armed timer is due, if any.</summary>
    public DateTimeOffset? NextDue
    {
        get
        {
            DropStale();
            return _due.TryPeek(out _, out var due) ? new DateTimeOffset(due.DueTicks, TimeSpan.Zero) : null;
        }
    }

    /// <summary>
    /// Moves the provider to the earliest due time, which makes it fire every timer due then, in the
    /// order they were armed; each becomes a step in the run queue. False when no timer is armed.
    /// </summary>
    internal bool TryAdvanceToNextDue(DateTimeOffset limit)
    {
        if (NextDue is not { } due) return false;
        if (due > limit)
            throw _executor.Failure<SimulationLimitException>(
                $"the next timer is due at {due:O}, beyond the virtual time limit {limit:O}: the simulation is not finishing");
        _firedDuringAdvance = 0;
        SetUtcNow(due > base.GetUtcNow() ? due : base.GetUtcNow());
        if (_firedDuringAdvance == 0)
            throw new InvalidOperationException(
                $"a timer was tracked as due at {due:O} but FakeTimeProvider fired none: the clock's tracking disagrees with the provider");
        return true;
    }

    private void DropStale()
    {
        while (_due.TryPeek(out var entry, out _) && !entry.Timer.IsCurrent(entry.Version)) _due.Dequeue();
    }
}
