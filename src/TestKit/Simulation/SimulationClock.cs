using System.Runtime.CompilerServices;
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
    // The provider's own GetUtcNow scans every armed timer (it may auto-advance) under a lock: with
    // thousands of timers, reading the clock at every step cost more than the steps. Time moves only
    // through SetUtcNow and Advance here, so a copy of the time is exact.
    private long _nowTicks;

    internal SimulationClock(SimulationExecutor executor, DateTimeOffset start)
        : base(start)
    {
        _executor = executor;
        _nowTicks = start.UtcTicks;
    }

    /// <summary>Virtual time since the simulation started.</summary>
    public TimeSpan Elapsed => new DateTimeOffset(_nowTicks, TimeSpan.Zero) - Start;

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
        return new DateTimeOffset(_nowTicks, TimeSpan.Zero);
    }

    /// <summary>Sets the time, firing the timers due by then; for the executor (tests move time with <see cref="AdvanceAsync(TimeSpan)"/>).</summary>
    public new void SetUtcNow(DateTimeOffset value)
    {
        // The copy first: timers fired inside SetUtcNow read the clock.
        var previous = _nowTicks;
        _nowTicks = Math.Max(value.UtcTicks, previous);
        try
        {
            base.SetUtcNow(value);
        }
        catch
        {
            _nowTicks = previous;
            throw;
        }
    }

    /// <summary>Moves the time by <paramref name="delta"/>, firing the timers due by then; prefer <see cref="AdvanceAsync(TimeSpan)"/>.</summary>
    public new void Advance(TimeSpan delta) => SetUtcNow(new DateTimeOffset(_nowTicks, TimeSpan.Zero) + delta);

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

    internal long NowTicks => _nowTicks;

    /// <summary>Sets the provider's time when no timer is due before <paramref name="ticks"/> (the executor checked).</summary>
    internal void MoveTo(long ticks) => SetUtcNow(new DateTimeOffset(ticks, TimeSpan.Zero));

    /// <summary>
    /// Completes once the simulation is idle — nothing runnable, no outside operation in flight —
    /// without moving the clock. Exact: the executor knows its queue.
    /// </summary>
    public Task RunUntilIdleAsync() => _executor.WhenIdleAsync(NowTicks);

    /// <summary>
    /// Moves virtual time forward by <paramref name="delta"/>: each timer due on the way fires in due
    /// order and the work it starts runs before the clock moves on; completes when the clock reads
    /// now + <paramref name="delta"/> and the simulation is idle.
    /// </summary>
    public Task AdvanceAsync(TimeSpan delta)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delta, TimeSpan.Zero);
        return _executor.WhenIdleAsync(NowTicks + delta.Ticks);
    }

    /// <summary>As <see cref="AdvanceAsync(TimeSpan)"/>, to an absolute time (no-op wait for idle when it has passed).</summary>
    public Task AdvanceToAsync(DateTimeOffset time) => _executor.WhenIdleAsync(Math.Max(time.UtcTicks, NowTicks));

    /// <summary>
    /// Completes once <paramref name="condition"/> holds, checking it at every idle point and moving
    /// the clock from due timer to due timer in between: no polling, no real time.
    /// </summary>
    /// <exception cref="TimeoutException">
    /// Still false after <paramref name="virtualTimeout"/> of virtual time, or false with nothing left that
    /// could change it (no work, no timer); the message names <paramref name="description"/> and the replay.
    /// </exception>
    public Task WaitUntilAsync(Func<bool> condition, TimeSpan virtualTimeout, CancellationToken cancellationToken = default,
        [CallerArgumentExpression(nameof(condition))] string? description = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        return WaitUntilAsync(() => Task.FromResult(condition()), virtualTimeout, cancellationToken, description);
    }

    /// <summary>
    /// As <see cref="WaitUntilAsync(Func{bool}, TimeSpan, CancellationToken, string?)"/> for a check that is
    /// itself asynchronous (a ping, a lookup); the clock moves while it waits, as for any simulated work.
    /// </summary>
    public async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan virtualTimeout, CancellationToken cancellationToken = default,
        [CallerArgumentExpression(nameof(condition))] string? description = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        ArgumentOutOfRangeException.ThrowIfLessThan(virtualTimeout, TimeSpan.Zero);
        var deadline = NowTicks + virtualTimeout.Ticks;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await RunUntilIdleAsync();
            if (await condition()) return;
            var next = NextDue;
            if (NowTicks >= deadline || next is null)
            {
                var why = next is null
                    ? "nothing is left to run and no timer is armed, so it can never change"
                    : $"virtual timeout of {virtualTimeout} passed";
                throw new TimeoutException(
                    $"'{description}' was still false at virtual time {Elapsed}: {why}. Replay: {_executor}");
            }
            await AdvanceToAsync(new DateTimeOffset(Math.Min(next.Value.UtcTicks, deadline), TimeSpan.Zero));
        }
    }

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
        SetUtcNow(due.UtcTicks > _nowTicks ? due : new DateTimeOffset(_nowTicks, TimeSpan.Zero));
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
