using System.Runtime.CompilerServices;
using MicrosoftFakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.TestKit.Simulation;

/// <summary>
/// The one clock of a simulation: Microsoft's <c>FakeTimeProvider</c>, extended with what the
/// executor needs. The provider keeps the time; this clock keeps the timers, in its own queue ordered
/// by due time, so it knows when the next one is due and turns each into a step of the run queue
/// instead of running it inside <c>SetUtcNow</c>. Only the executor moves the time: when nothing is
/// runnable, to the earliest due timer.
/// </summary>
/// <remarks>
/// <para>
/// The provider sees one timer of its own, armed at the earliest due time of the queue: it scans
/// every timer it holds on each read of the clock and each timer change, which with the thousands of
/// timers of a large simulation (a query timeout per request) cost more than the steps. Moving the
/// time through the provider's own <c>SetUtcNow</c>, even through a <c>FakeTimeProvider</c>
/// reference, still fires every timer due on the way.
/// </para>
/// <para>
/// Use it from the simulation thread only: a call from any other thread while a run is in progress
/// means something escaped the executor, and fails the run.
/// </para>
/// </remarks>
public sealed class SimulationClock : MicrosoftFakeTimeProvider
{
    // Same bound as the provider's own validation (milliseconds, as System.Threading.Timer).
    private const long MaxTimerMilliseconds = 0xfffffffe;

    private readonly SimulationExecutor _executor;
    private readonly PriorityQueue<(SimulationTimer Timer, long Version), (long DueTicks, long Sequence)> _due = new();
    private long _sequence;
    private long _firedDuringAdvance;
    // The provider's one timer, armed at the queue's earliest due time (long.MaxValue: none armed).
    private ITimer? _sentinel;
    private long _sentinelDue = long.MaxValue;

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

    /// <summary>Moves the time by <paramref name="delta"/>, as the provider's <c>Advance</c> without its one-millisecond sleep.</summary>
    public new void Advance(TimeSpan delta) => SetUtcNow(base.GetUtcNow() + delta);

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
        timer.Arm(dueTime, period);
        return timer;
    }

    internal static void Validate(TimeSpan dueTime, TimeSpan period)
    {
        static bool Valid(TimeSpan t) => (long)t.TotalMilliseconds is >= -1 and <= MaxTimerMilliseconds;
        if (!Valid(dueTime)) throw new ArgumentOutOfRangeException(nameof(dueTime));
        if (!Valid(period)) throw new ArgumentOutOfRangeException(nameof(period));
    }

    internal long NowTicks => base.GetUtcNow().UtcTicks;

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

    internal void Track(SimulationTimer timer, long version, long dueTicks)
    {
        _due.Enqueue((timer, version), (dueTicks, _sequence++));
        if (dueTicks <= NowTicks) FireDue();
        else if (dueTicks < _sentinelDue) ArmSentinel();
    }

    internal void NoteFired() => _firedDuringAdvance++;

    /// <summary>The earliest time a timer is due, or null when none is armed.</summary>
    public DateTimeOffset? NextDue
    {
        get
        {
            DropStale();
            return _due.TryPeek(out _, out var due) ? new DateTimeOffset(due.DueTicks, TimeSpan.Zero) : null;
        }
    }

    /// <summary>Moves the time to the earliest due timer (no further than <paramref name="limit"/>); false when none is armed.</summary>
    internal bool TryAdvanceToNextDue(DateTimeOffset limit)
    {
        if (NextDue is not { } due) return false;
        if (due > limit)
            throw _executor.Failure<SimulationLimitException>(
                $"the next timer is due at {due:O}, beyond the virtual time limit {limit:O}: the simulation is not finishing");
        _firedDuringAdvance = 0;
        var now = NowTicks;
        if (due.UtcTicks > now) SetUtcNow(due);
        else FireDue();
        if (_firedDuringAdvance == 0)
            throw new InvalidOperationException(
                $"a timer was tracked as due at {due:O} but none fired: the clock's queue disagrees with the provider's time");
        return true;
    }

    /// <summary>Turns every timer due by now into a step of the run queue, in due order, then re-arms the provider's timer.</summary>
    private void FireDue()
    {
        var now = NowTicks;
        while (_due.TryPeek(out var entry, out var due) && due.DueTicks <= now)
        {
            _due.Dequeue();
            if (entry.Timer.IsCurrent(entry.Version)) entry.Timer.OnDue();
        }
        ArmSentinel();
    }

    private void ArmSentinel()
    {
        DropStale();
        var next = _due.TryPeek(out _, out var due) ? due.DueTicks : long.MaxValue;
        if (next == _sentinelDue && _sentinel is not null) return;
        _sentinelDue = next;
        if (next == long.MaxValue)
        {
            _sentinel?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            return;
        }
        var wait = TimeSpan.FromTicks(Math.Max(0, next - NowTicks));
        if (_sentinel is null) _sentinel = base.CreateTimer(static s => ((SimulationClock)s!).OnSentinel(), this, wait, Timeout.InfiniteTimeSpan);
        else _sentinel.Change(wait, Timeout.InfiniteTimeSpan);
    }

    private void OnSentinel()
    {
        // The provider drops a one-shot timer once its callback returns, re-armed or not: leave it
        // to that and arm a new one.
        _sentinel = null;
        _sentinelDue = long.MaxValue;
        FireDue();
    }

    private void DropStale()
    {
        while (_due.TryPeek(out var entry, out _) && !entry.Timer.IsCurrent(entry.Version)) _due.Dequeue();
    }
}
