using System.Runtime.CompilerServices;
using P2PInference.TestKit.Time;

namespace P2PInference.TestKit.Harness;

/// <summary>
/// Moves a <see cref="FakeTimeProvider"/> for a test: optionally on its own (a <see cref="VirtualTimePump"/>
/// jumps to the next due timer whenever the system goes idle), and on demand in
/// <see cref="WaitUntilAsync(Func{bool}, TimeSpan, CancellationToken, string?)"/>, <see cref="RunAsync"/> and
/// <see cref="AdvanceAsync"/>, which step virtual time themselves. A <see cref="TestCluster"/> owns one; it
/// is usable on its own for tests without a cluster.
/// </summary>
/// <remarks>
/// While a wait or an advance runs, the pump is paused, so exactly one party moves the clock and each
/// step is followed by a check of the condition. Waiting never sleeps or polls on real time: the
/// condition is checked, the system is let run until idle (<see cref="FakeTimeProvider.RunUntilIdleAsync"/>),
/// the condition is checked again, and only then is the clock moved — to the next due timer, or, when
/// none is due, by a step that doubles each time (1 ms, 2 ms, 4 ms…) — never past the deadline.
/// </remarks>
public sealed class VirtualTimeDriver : IAsyncDisposable
{
    private readonly SemaphoreSlim _pumpGate = new(1, 1);
    private readonly SemaphoreSlim _stepGate = new(1, 1);
    private VirtualTimePump? _pump;
    private int _suspensions;
    private bool _disposed;

    /// <param name="time">The clock to drive.</param>
    /// <param name="seed">The test's seed, named in timeout messages so a failure can be replayed.</param>
    /// <param name="autoAdvance">Whether a <see cref="VirtualTimePump"/> moves time whenever the system is idle.</param>
    public VirtualTimeDriver(FakeTimeProvider time, int seed, bool autoAdvance)
    {
        ArgumentNullException.ThrowIfNull(time);
        Time = time;
        Seed = seed;
        AutoAdvance = autoAdvance;
        if (autoAdvance) _pump = new VirtualTimePump(time);
    }

    public FakeTimeProvider Time { get; }

    public int Seed { get; }

    /// <summary>Whether time moves on its own whenever the system is idle (outside waits, which drive it themselves).</summary>
    public bool AutoAdvance { get; }

    /// <summary>
    /// Completes once <paramref name="condition"/> returns true, checking it whenever virtual time moves or
    /// the system goes idle; moves virtual time itself between checks.
    /// </summary>
    /// <exception cref="TimeoutException">Still false after <paramref name="virtualTimeout"/> of virtual time; the message names <paramref name="description"/> and the seed.</exception>
    public Task WaitUntilAsync(Func<bool> condition, TimeSpan virtualTimeout, CancellationToken cancellationToken,
        [CallerArgumentExpression(nameof(condition))] string? description = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        return WaitCoreAsync(() => Task.FromResult(condition()), virtualTimeout, description, cancellationToken);
    }

    /// <summary>
    /// As <see cref="WaitUntilAsync(Func{bool}, TimeSpan, CancellationToken, string?)"/> for an asynchronous
    /// check. A check that itself waits on virtual time (a ping with a timeout, a lookup with latency) is
    /// driven too: time moves while it is pending. Exceptions from the check propagate.
    /// </summary>
    public Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan virtualTimeout, CancellationToken cancellationToken,
        [CallerArgumentExpression(nameof(condition))] string? description = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        return WaitCoreAsync(condition, virtualTimeout, description, cancellationToken);
    }

    /// <summary>
    /// Awaits <paramref name="operation"/>, moving virtual time while it is pending and the system is
    /// idle, for operations that wait on the clock (latency, timeouts) when nothing else moves it.
    /// </summary>
    /// <exception cref="TimeoutException">Not complete after <paramref name="virtualTimeout"/> of virtual time.</exception>
    public async Task<T> RunAsync<T>(Func<Task<T>> operation, TimeSpan virtualTimeout, CancellationToken cancellationToken,
        [CallerArgumentExpression(nameof(operation))] string? description = null)
    {
        ArgumentNullException.ThrowIfNull(operation);
        ValidateTimeout(virtualTimeout);
        await SuspendPumpAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var wait = new WaitState(Time.GetTimestamp(), virtualTimeout, description);
            var task = operation();
            await DriveUntilCompletedAsync(task, wait, cancellationToken).ConfigureAwait(false);
            return await task.ConfigureAwait(false);
        }
        finally
        {
            await ResumePumpAsync().ConfigureAwait(false);
        }
    }

    /// <inheritdoc cref="RunAsync{T}(Func{Task{T}}, TimeSpan, CancellationToken, string?)"/>
    public Task RunAsync(Func<Task> operation, TimeSpan virtualTimeout, CancellationToken cancellationToken,
        [CallerArgumentExpression(nameof(operation))] string? description = null)
    {
        ArgumentNullException.ThrowIfNull(operation);
        return RunAsync(async () =>
        {
            await operation().ConfigureAwait(false);
            return true;
        }, virtualTimeout, cancellationToken, description);
    }

    /// <summary>
    /// Moves virtual time forward by <paramref name="delta"/> in steps (each due timer fires and the work it
    /// starts runs before the next), with the pump paused.
    /// </summary>
    public async Task AdvanceAsync(TimeSpan delta, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delta, TimeSpan.Zero);
        await SuspendPumpAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _stepGate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await Time.AdvanceAsync(delta, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _stepGate.Release();
            }
        }
        finally
        {
            await ResumePumpAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Lets pending work run until the system is idle, without moving the clock (the pump is paused meanwhile).</summary>
    /// <remarks>Use this rather than <see cref="FakeTimeProvider.RunUntilIdleAsync"/> while the pump runs: the
    /// pump's own steps keep the clock busy, so that one would only return after its real-time bound.</remarks>
    public async Task RunUntilIdleAsync(CancellationToken cancellationToken)
    {
        await SuspendPumpAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Time.RunUntilIdleAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await ResumePumpAsync().ConfigureAwait(false);
        }
    }

    private async Task WaitCoreAsync(Func<Task<bool>> condition, TimeSpan timeout, string? description, CancellationToken cancellationToken)
    {
        ValidateTimeout(timeout);
        await SuspendPumpAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var wait = new WaitState(Time.GetTimestamp(), timeout, description);
            while (true)
            {
                if (await CheckAsync(condition, wait, cancellationToken).ConfigureAwait(false)) return;
                await Time.RunUntilIdleAsync(cancellationToken).ConfigureAwait(false);
                if (await CheckAsync(condition, wait, cancellationToken).ConfigureAwait(false)) return;
                if (Time.GetElapsedTime(wait.Start) >= timeout)
                    throw TimedOut($"the condition was still false after {timeout} of virtual time", description);
                await StepAsync(wait, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            await ResumePumpAsync().ConfigureAwait(false);
        }
    }

    private async Task<bool> CheckAsync(Func<Task<bool>> condition, WaitState wait, CancellationToken cancellationToken)
    {
        var check = condition();
        await DriveUntilCompletedAsync(check, wait, cancellationToken).ConfigureAwait(false);
        return await check.ConfigureAwait(false);
    }

    private async Task DriveUntilCompletedAsync(Task task, WaitState wait, CancellationToken cancellationToken)
    {
        while (!task.IsCompleted)
        {
            await Time.RunUntilIdleAsync(cancellationToken).ConfigureAwait(false);
            if (task.IsCompleted) return;
            if (Time.GetElapsedTime(wait.Start) >= wait.Timeout)
                throw TimedOut($"it had not completed after {wait.Timeout} of virtual time", wait.Description);
            await StepAsync(wait, cancellationToken).ConfigureAwait(false);
        }
    }

    // One move of the clock: to the next due timer. With none due, by a quiet step that doubles each
    // time (1 ms, 2 ms, 4 ms…): a condition that depends on time alone still comes true close to when
    // it should, and a long timeout costs a few dozen steps. Never past the deadline.
    private async Task StepAsync(WaitState wait, CancellationToken cancellationToken)
    {
        await _stepGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var remaining = wait.Timeout - Time.GetElapsedTime(wait.Start);
            if (remaining <= TimeSpan.Zero) return;
            TimeSpan step;
            if (Time.NextDueTime is { } due)
            {
                step = due - Time.GetUtcNow();
                wait.QuietStep = FirstQuietStep;
            }
            else
            {
                step = wait.QuietStep;
                wait.QuietStep *= 2;
            }
            if (step > remaining) step = remaining;
            // A timer due now has fired already; a zero step would make no progress.
            Time.Advance(step > TimeSpan.Zero ? step : TimeSpan.FromTicks(1));
        }
        finally
        {
            _stepGate.Release();
        }
    }

    private static readonly TimeSpan FirstQuietStep = TimeSpan.FromMilliseconds(1);

    private sealed class WaitState(long start, TimeSpan timeout, string? description)
    {
        public long Start { get; } = start;
        public TimeSpan Timeout { get; } = timeout;
        public string? Description { get; } = description;
        public TimeSpan QuietStep { get; set; } = FirstQuietStep;
    }

    private TimeoutException TimedOut(string what, string? description) =>
        new($"Waited for {Describe(description)}: {what} (virtual clock now {Time}). "
            + $"Replay this run with {TestSeed.EnvironmentVariable}={Seed}.");

    private static string Describe(string? description) =>
        string.IsNullOrWhiteSpace(description) ? "a condition" : $"`{description.Trim()}`";

    private static void ValidateTimeout(TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero);
    }

    private async Task SuspendPumpAsync(CancellationToken cancellationToken)
    {
        await _pumpGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_suspensions++ == 0 && _pump is not null)
            {
                await _pump.DisposeAsync().ConfigureAwait(false);
                _pump = null;
            }
        }
        finally
        {
            _pumpGate.Release();
        }
    }

    private async Task ResumePumpAsync()
    {
        await _pumpGate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (--_suspensions == 0 && AutoAdvance && !_disposed) _pump = new VirtualTimePump(Time);
        }
        finally
        {
            _pumpGate.Release();
        }
    }

    /// <summary>Stops the pump. Waits in progress finish or fail on their own.</summary>
    public async ValueTask DisposeAsync()
    {
        await _pumpGate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (_disposed) return;
            _disposed = true;
            if (_pump is not null) await _pump.DisposeAsync().ConfigureAwait(false);
            _pump = null;
        }
        finally
        {
            _pumpGate.Release();
        }
    }
}
