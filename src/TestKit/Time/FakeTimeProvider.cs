using System.Globalization;

namespace P2PInference.TestKit.Time;

/// <summary>
/// A <see cref="TimeProvider"/> whose clock moves only when the test moves it. It has the public
/// API and semantics of Microsoft.Extensions.TimeProvider.Testing's <c>FakeTimeProvider</c>
/// (which is not available here), plus <see cref="AdvanceAsync"/>, <see cref="RunUntilIdleAsync"/>,
/// a step/jump choice (<see cref="AdvanceMode"/>), <see cref="PendingTimerCount"/> and
/// <see cref="NextDueTime"/>.
/// </summary>
/// <remarks>
/// <para>
/// Two clocks are kept: a monotonic one, which drives timers and <see cref="GetTimestamp"/>, and
/// the wall clock (<see cref="GetUtcNow"/>), which is the monotonic clock plus an offset that only
/// <see cref="AdjustTime"/> changes. <see cref="Advance"/>, <see cref="SetUtcNow"/> and
/// <see cref="AutoAdvanceAmount"/> move both.
/// </para>
/// <para>
/// Timers fire synchronously on the thread that moves the clock, in due order (ties in the order
/// they were scheduled). A timer whose due time is zero fires inside <see cref="CreateTimer"/> or
/// <see cref="ITimer.Change"/>, as in the original. Only one thread fires timers at a time: when the
/// clock is moved while timers are firing (by a callback on the firing thread, or by another
/// thread), the move is added to the pending target and the firing thread carries it out; the call
/// returns without waiting. Advances are cumulative: the target is the previous target plus the
/// delta. Scheduled timers are held by the provider until they fire (one-shot), are disabled or are
/// disposed, so an unreferenced <c>Task.Delay</c> still completes.
/// </para>
/// <para>
/// An exception thrown by a timer callback propagates to whoever moved the clock; the clock stays
/// at that timer's due time and the rest of the pending advance is carried out by the next move.
/// </para>
/// </remarks>
public sealed class FakeTimeProvider : TimeProvider
{
    /// <summary>Consecutive quiet rounds <see cref="RunUntilIdleAsync"/> needs before it calls the system idle.</summary>
    public const int QuietRoundsRequired = 3;

    private static readonly DateTimeOffset DefaultStart = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    // System.Threading.Timer's limits, so a test cannot schedule what production code could not.
    private const long MaxTimeoutMilliseconds = 0xfffffffeL;

    // The name the .NET runtime gives thread-pool worker threads on Linux.
    private const string PoolWorkerThreadName = ".NET TP Worker";

    private readonly object _gate = new();
    private readonly SortedSet<FakeTimer> _scheduled = new(DueOrder.Instance);
    private readonly long _startTicks;

    // Ticks since Start on the monotonic clock; timers are due on this clock.
    private long _clock;

    // Where pending moves are taking the clock; equal to _clock unless timers are firing.
    private long _target;

    // Wall clock minus monotonic clock; only AdjustTime changes it.
    private long _wallAdjust;

    private long _sequence;
    private long _version;
    private bool _firing;
    private TaskCompletionSource _timerScheduled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TimeSpan _autoAdvanceAmount;
    private TimeZoneInfo _localTimeZone = TimeZoneInfo.Utc;
    private TimeAdvanceMode _advanceMode = TimeAdvanceMode.Step;
    private long _idleTimeoutTicks = TimeSpan.FromSeconds(2).Ticks;

    /// <summary>A provider whose clock starts at midnight, January 1st 2000, UTC.</summary>
    public FakeTimeProvider()
        : this(DefaultStart)
    {
    }

    /// <summary>A provider whose clock starts at <paramref name="startDateTime"/>.</summary>
    public FakeTimeProvider(DateTimeOffset startDateTime)
    {
        Start = startDateTime;
        _startTicks = startDateTime.UtcTicks;
    }

    /// <summary>The instant the clock started at.</summary>
    public DateTimeOffset Start { get; }

    /// <summary>
    /// How far the clock moves after each <see cref="GetUtcNow"/> (which returns the time before
    /// the move); zero by default. Timers that come due fire. <see cref="GetTimestamp"/> does not
    /// move the clock.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public TimeSpan AutoAdvanceAmount
    {
        get
        {
            lock (_gate)
            {
                return _autoAdvanceAmount;
            }
        }
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            lock (_gate)
            {
                _autoAdvanceAmount = value;
            }
        }
    }

    /// <summary>
    /// Whether moving the clock steps through each due time (<see cref="TimeAdvanceMode.Step"/>,
    /// the default) or jumps to the target first (<see cref="TimeAdvanceMode.Jump"/>). Applies to
    /// <see cref="Advance"/>, <see cref="SetUtcNow"/>, <see cref="AutoAdvanceAmount"/> and
    /// <see cref="AdvanceAsync"/>.
    /// </summary>
    public TimeAdvanceMode AdvanceMode
    {
        get
        {
            lock (_gate)
            {
                return _advanceMode;
            }
        }
        set
        {
            if (value is not TimeAdvanceMode.Step and not TimeAdvanceMode.Jump)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Unknown advance mode.");
            }

            lock (_gate)
            {
                _advanceMode = value;
            }
        }
    }

    /// <summary>
    /// The most real time one <see cref="RunUntilIdleAsync"/> (and each step of
    /// <see cref="AdvanceAsync"/>) spends waiting for busy thread-pool work to finish; 2 seconds by
    /// default. Only reached when pool threads stay busy (long computation, a blocked thread,
    /// another test's work): a system that goes quiet is detected in a few thread-pool hops. A
    /// bound, so such a system costs time but never hangs.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public TimeSpan IdleTimeout
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _idleTimeoutTicks));
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            Interlocked.Exchange(ref _idleTimeoutTicks, value.Ticks);
        }
    }

    /// <summary>How many timers are scheduled (created or changed with a finite due time, not yet fired if one-shot, not disposed).</summary>
    public int PendingTimerCount
    {
        get
        {
            lock (_gate)
            {
                return _scheduled.Count;
            }
        }
    }

    /// <summary>The wall-clock time at which the next scheduled timer fires, or null when none is scheduled.</summary>
    public DateTimeOffset? NextDueTime
    {
        get
        {
            lock (_gate)
            {
                return _scheduled.Count == 0 ? null : WallLocked(_scheduled.Min!.Due);
            }
        }
    }

    /// <inheritdoc />
    public override TimeZoneInfo LocalTimeZone
    {
        get
        {
            lock (_gate)
            {
                return _localTimeZone;
            }
        }
    }

    /// <summary>Fixed at <see cref="TimeSpan.TicksPerSecond"/>, so timestamps convert to time spans exactly.</summary>
    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    /// <inheritdoc />
    public override DateTimeOffset GetUtcNow()
    {
        DateTimeOffset now;
        bool moved;
        lock (_gate)
        {
            now = WallLocked(_clock);
            moved = _autoAdvanceAmount > TimeSpan.Zero;
            if (moved)
            {
                _target += _autoAdvanceAmount.Ticks;
            }
        }

        if (moved)
        {
            RunDueTimers();
        }

        return now;
    }

    /// <summary>
    /// A monotonic timestamp in ticks: <see cref="Start"/>'s UTC ticks plus the time the clock has
    /// moved. <see cref="AdjustTime"/> does not change it, as a wall-clock change does not change
    /// a real monotonic counter.
    /// </summary>
    public override long GetTimestamp()
    {
        lock (_gate)
        {
            return _startTicks + _clock;
        }
    }

    /// <summary>Moves the clock forward to <paramref name="value"/>, firing the timers that come due.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is before the current time.</exception>
    public void SetUtcNow(DateTimeOffset value)
    {
        lock (_gate)
        {
            var now = WallLocked(_clock);
            if (value < now)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, $"Cannot go back in time. Current time is {now:O}.");
            }

            var target = value.UtcTicks - _startTicks - _wallAdjust;
            if (target > _target)
            {
                _target = target;
            }
        }

        RunDueTimers();
    }

    /// <summary>Moves the clock forward by <paramref name="delta"/>, firing the timers that come due.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="delta"/> is negative.</exception>
    public void Advance(TimeSpan delta)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delta, TimeSpan.Zero);
        lock (_gate)
        {
            _target += delta.Ticks;
        }

        RunDueTimers();
    }

    /// <summary>
    /// Sets the wall clock to <paramref name="value"/> (forwards or backwards) without firing or
    /// moving timers and without changing <see cref="GetTimestamp"/>, as when a real system's
    /// clock is corrected: timers still fire after the durations they were given.
    /// </summary>
    public void AdjustTime(DateTimeOffset value)
    {
        lock (_gate)
        {
            _wallAdjust = value.UtcTicks - _startTicks - _clock;
            _version++;
        }
    }

    /// <summary>Sets <see cref="LocalTimeZone"/>.</summary>
    public void SetLocalTimeZone(TimeZoneInfo localTimeZone)
    {
        ArgumentNullException.ThrowIfNull(localTimeZone);
        lock (_gate)
        {
            _localTimeZone = localTimeZone;
        }
    }

    /// <summary>
    /// Moves the clock forward by <paramref name="delta"/>, letting the work that each firing
    /// triggers run before going on, so timers created by that work fire too when they fall
    /// within <paramref name="delta"/>. This is what makes chains such as
    /// <c>while (...) await Task.Delay(period, tp);</c> advance correctly, even when the
    /// continuations hop through the thread pool.
    /// </summary>
    /// <remarks>
    /// First it runs <see cref="RunUntilIdleAsync"/>, so work already under way schedules its
    /// timers. Then, in <see cref="TimeAdvanceMode.Step"/> mode, it repeats: move the clock to the
    /// earliest due time within the target (firing every timer due then), then
    /// <see cref="RunUntilIdleAsync"/>; and finally moves the clock to the target. In
    /// <see cref="TimeAdvanceMode.Jump"/> mode it moves the clock to the target at once, fires what
    /// is due and runs <see cref="RunUntilIdleAsync"/> once. Cancellation is observed between
    /// steps; the clock stays where it got to. It awaits on the caller's synchronization context
    /// (no <c>ConfigureAwait(false)</c>), so continuations posted to that context get to run too.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="delta"/> is negative.</exception>
    public async Task AdvanceAsync(TimeSpan delta, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delta, TimeSpan.Zero);
        long end;
        lock (_gate)
        {
            end = _target + delta.Ticks;
        }

        await RunUntilIdleAsync(cancellationToken);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            lock (_gate)
            {
                var step = end;
                if (_advanceMode == TimeAdvanceMode.Step && _scheduled.Count > 0 && _scheduled.Min!.Due < end)
                {
                    step = Math.Max(_scheduled.Min.Due, _clock);
                }

                if (step > _target)
                {
                    _target = step;
                }
            }

            RunDueTimers();
            await RunUntilIdleAsync(cancellationToken);
            lock (_gate)
            {
                if (_clock >= end && (_scheduled.Count == 0 || _scheduled.Min!.Due > end))
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// Lets pending work run, without moving the clock, until the system looks idle; a best effort
    /// bounded by <see cref="IdleTimeout"/>, never an error.
    /// </summary>
    /// <remarks>
    /// One round yields once (<c>await Task.Yield()</c>: to the caller's synchronization context if
    /// it has one, otherwise to the back of the thread pool's global queue, so work queued earlier
    /// gets to run first). A round is quiet when no timer was created, changed, disposed or fired
    /// and the clock was not adjusted since the previous round, the thread pool has no queued work
    /// item, and no other pool worker is computing. On Linux a worker counts as computing while the
    /// pool reports it busy and <c>/proc/self/task</c> shows a worker (a thread named
    /// <c>.NET TP Worker</c>) running or runnable; a busy but blocked worker (a test runner's thread
    /// waiting for the test, say) does not count, since it may never finish. On other systems
    /// running workers are not seen, only queued work. The system is idle after
    /// <see cref="QuietRoundsRequired"/> quiet rounds in a row. While other pool threads are busy,
    /// each round also gives up the rest of this thread's time slice, so the busy work gets the CPU.
    /// Continuations that run synchronously inside a timer callback (the usual case for
    /// <c>await Task.Delay(…, tp)</c> without a synchronization context) already ran before this is
    /// called. Work on threads outside the pool (dedicated threads, long-running tasks) is not seen.
    /// </remarks>
    public async Task RunUntilIdleAsync(CancellationToken cancellationToken = default)
    {
        var timeout = IdleTimeout;
        var began = TimeProvider.System.GetTimestamp();
        var quiet = 0;
        var version = ReadVersion();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await Task.Yield();
            var current = ReadVersion();
            var othersBusy = OtherPoolThreadsBusy();
            quiet = current == version && !othersBusy ? quiet + 1 : 0;
            version = current;
            if (quiet >= QuietRoundsRequired || TimeProvider.System.GetElapsedTime(began) >= timeout)
            {
                return;
            }

            if (othersBusy)
            {
                _ = Thread.Yield();
            }
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// A due time of <see cref="Timeout.InfiniteTimeSpan"/> creates a disabled timer; a period of
    /// <see cref="Timeout.InfiniteTimeSpan"/> or zero a one-shot timer. A periodic timer the clock
    /// moves past several periods of fires once per period, in order (catch-up). The callback runs
    /// in the <see cref="ExecutionContext"/> captured here, like a real timer's.
    /// </remarks>
    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var timer = new FakeTimer(this, callback, state, ExecutionContext.Capture());
        _ = ChangeTimer(timer, dueTime, period);
        return timer;
    }

    /// <summary>The current wall-clock time as <c>yyyy-MM-ddTHH:mm:ss.fff</c>; does not auto-advance.</summary>
    public override string ToString()
    {
        lock (_gate)
        {
            return WallLocked(_clock).ToString("yyyy-MM-ddTHH:mm:ss.fff", CultureInfo.InvariantCulture);
        }
    }

    private static void ValidateTimeout(TimeSpan value, string paramName)
    {
        var milliseconds = (long)value.TotalMilliseconds;
        if (milliseconds is < -1 or > MaxTimeoutMilliseconds)
        {
            throw new ArgumentOutOfRangeException(paramName, value, "Must be Timeout.InfiniteTimeSpan or between zero and 4294967294 milliseconds.");
        }
    }

    private static bool OtherPoolThreadsBusy()
    {
        if (ThreadPool.PendingWorkItemCount != 0)
        {
            return true;
        }

        ThreadPool.GetMaxThreads(out var maxWorkers, out _);
        ThreadPool.GetAvailableThreads(out var availableWorkers, out _);
        var busyOthers = maxWorkers - availableWorkers - (Thread.CurrentThread.IsThreadPoolThread ? 1 : 0);

        // A busy pool thread may be computing, or blocked for good (a test runner commonly blocks
        // one waiting for the test's task). Only the OS can tell the two apart.
        return busyOthers > 0 && OtherThreadsRunnable();
    }

    // Linux only: whether any other thread-pool worker of this process is running or ready to run.
    // Elsewhere false, so only queued work and timer changes count as activity.
    private static bool OtherThreadsRunnable()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            var self = Path.GetFileName(Directory.ResolveLinkTarget("/proc/thread-self", returnFinalTarget: false)?.FullName);
            foreach (var task in Directory.EnumerateDirectories("/proc/self/task"))
            {
                if (string.Equals(Path.GetFileName(task), self, StringComparison.Ordinal))
                {
                    continue;
                }

                string stat;
                try
                {
                    stat = File.ReadAllText(Path.Combine(task, "stat"));
                }
                catch (IOException)
                {
                    continue; // the thread exited
                }

                // Format: "tid (comm) state ...": comm may hold spaces and parentheses. Only pool
                // workers count: the runtime's own threads (JIT, GC) are runnable now and then
                // for reasons no test waits for.
                var open = stat.IndexOf('(', StringComparison.Ordinal);
                var close = stat.LastIndexOf(')');
                if (open >= 0 && close > open && close + 2 < stat.Length && stat[close + 2] == 'R'
                    && stat.AsSpan(open + 1, close - open - 1).StartsWith(PoolWorkerThreadName, StringComparison.Ordinal))
                {
                    return true;
                }
            }

            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private long ReadVersion()
    {
        lock (_gate)
        {
            return _version;
        }
    }

    private DateTimeOffset WallLocked(long clock) => new(_startTicks + clock + _wallAdjust, TimeSpan.Zero);

    private bool ChangeTimer(FakeTimer timer, TimeSpan dueTime, TimeSpan period)
    {
        ValidateTimeout(dueTime, nameof(dueTime));
        ValidateTimeout(period, nameof(period));
        bool dueNow;
        lock (_gate)
        {
            if (timer.Disposed)
            {
                return false;
            }

            Unschedule(timer);
            _version++;
            if ((long)dueTime.TotalMilliseconds == -1)
            {
                return true;
            }

            timer.Period = (long)period.TotalMilliseconds == -1 ? 0 : Math.Max(0, period.Ticks);
            timer.Due = _clock + Math.Max(0, dueTime.Ticks);
            Schedule(timer);
            dueNow = timer.Due <= _target;
        }

        if (dueNow)
        {
            RunDueTimers();
        }

        return true;
    }

    private void DisposeTimer(FakeTimer timer)
    {
        lock (_gate)
        {
            if (timer.Disposed)
            {
                return;
            }

            timer.Disposed = true;
            Unschedule(timer);
            _version++;
        }
    }

    private void Schedule(FakeTimer timer)
    {
        timer.Sequence = ++_sequence;
        timer.Scheduled = true;
        _ = _scheduled.Add(timer);
        _timerScheduled.TrySetResult();
        _timerScheduled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// Completes at once while a timer is scheduled, otherwise when one next is: lets a driver such
    /// as <see cref="VirtualTimePump"/> wait for work instead of polling.
    /// </summary>
    public Task WhenTimerScheduledAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            return _scheduled.Count > 0 ? Task.CompletedTask : _timerScheduled.Task.WaitAsync(cancellationToken);
        }
    }

    private void Unschedule(FakeTimer timer)
    {
        if (timer.Scheduled)
        {
            _ = _scheduled.Remove(timer);
            timer.Scheduled = false;
        }
    }

    // Fires due timers until the clock reaches the target, unless some thread already is doing so;
    // that thread then carries the new target out.
    private void RunDueTimers()
    {
        lock (_gate)
        {
            if (_firing)
            {
                MoveClockWithoutFiringLocked();
                return;
            }

            _firing = true;
        }

        var finished = false;
        try
        {
            while (true)
            {
                FakeTimer timer;
                lock (_gate)
                {
                    if (_scheduled.Count == 0 || _scheduled.Min!.Due > _target)
                    {
                        _clock = _target;
                        _firing = false;
                        finished = true;
                        return;
                    }

                    timer = _scheduled.Min;
                    _clock = _advanceMode == TimeAdvanceMode.Jump ? _target : Math.Max(_clock, timer.Due);
                    _ = _scheduled.Remove(timer);
                    timer.Scheduled = false;
                    if (timer.Period > 0)
                    {
                        // Catch-up: the next due time follows from this one, not from the clock.
                        timer.Due += timer.Period;
                        Schedule(timer);
                    }

                    _version++;
                }

                timer.Fire();
            }
        }
        finally
        {
            if (!finished)
            {
                lock (_gate)
                {
                    _firing = false;
                }
            }
        }
    }

    // While another frame or thread fires timers, a clock move still shows in GetUtcNow at once,
    // but in Step mode never past a timer that has not fired yet.
    private void MoveClockWithoutFiringLocked()
    {
        var limit = _target;
        if (_advanceMode == TimeAdvanceMode.Step && _scheduled.Count > 0 && _scheduled.Min!.Due < limit)
        {
            limit = _scheduled.Min.Due;
        }

        if (limit > _clock)
        {
            _clock = limit;
        }
    }

    private sealed class FakeTimer(FakeTimeProvider owner, TimerCallback callback, object? state, ExecutionContext? context) : ITimer
    {
        private static readonly ContextCallback RunInContext = static s => ((FakeTimer)s!).Invoke();

        // Guarded by the owner's gate.
        internal long Due;
        internal long Period;
        internal long Sequence;
        internal bool Scheduled;
        internal bool Disposed;

        public bool Change(TimeSpan dueTime, TimeSpan period) => owner.ChangeTimer(this, dueTime, period);

        public void Dispose() => owner.DisposeTimer(this);

        public ValueTask DisposeAsync()
        {
            owner.DisposeTimer(this);
            return ValueTask.CompletedTask;
        }

        internal void Fire()
        {
            if (context is null)
            {
                Invoke();
            }
            else
            {
                ExecutionContext.Run(context, RunInContext, this);
            }
        }

        private void Invoke() => callback(state);
    }

    private sealed class DueOrder : IComparer<FakeTimer>
    {
        public static readonly DueOrder Instance = new();

        public int Compare(FakeTimer? x, FakeTimer? y)
        {
            if (ReferenceEquals(x, y))
            {
                return 0;
            }

            if (x is null)
            {
                return -1;
            }

            if (y is null)
            {
                return 1;
            }

            var byDue = x.Due.CompareTo(y.Due);
            return byDue != 0 ? byDue : x.Sequence.CompareTo(y.Sequence);
        }
    }
}
