namespace P2PInference.Tests.Integration.Transport;

/// <summary>
/// A clock whose timers fire only when the test says so, so a timeout path runs without waiting.
/// (A stand-in until the TestKit's FakeTimeProvider is on this branch.)
/// </summary>
internal sealed class ManualTimeProvider : TimeProvider
{
    private readonly List<ManualTimer> _timers = [];
    private readonly TaskCompletionSource<TimeSpan> _firstTimer = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with the due time of the first timer created.</summary>
    public Task<TimeSpan> FirstTimerCreated => _firstTimer.Task;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(callback, state);
        lock (_timers) _timers.Add(timer);
        _firstTimer.TrySetResult(dueTime);
        return timer;
    }

    public void FireAll()
    {
        ManualTimer[] timers;
        lock (_timers) timers = [.. _timers];
        foreach (var timer in timers) timer.Fire();
    }

    private sealed class ManualTimer(TimerCallback callback, object? state) : ITimer
    {
        private bool _disposed;

        public bool Change(TimeSpan dueTime, TimeSpan period) => !_disposed;

        public void Fire()
        {
            if (!_disposed) callback(state);
        }

        public void Dispose() => _disposed = true;

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
