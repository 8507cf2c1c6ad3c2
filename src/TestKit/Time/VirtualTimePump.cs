namespace P2PInference.TestKit.Time;

/// <summary>
/// Drives a <see cref="FakeTimeProvider"/> on its own, for tests whose code under test waits on
/// fake time in ways the test cannot step through by hand (a whole network stack with link
/// latency): whenever the system goes idle, the clock jumps to the next due timer. Virtual time
/// therefore passes only while everything waits on it — deterministic order, no real waiting.
/// </summary>
public sealed class VirtualTimePump : IAsyncDisposable
{
    private readonly FakeTimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public VirtualTimePump(FakeTimeProvider time)
    {
        _time = time;
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>How many times the pump moved the clock.</summary>
    public long Steps { get; private set; }

    private async Task LoopAsync()
    {
        var token = _stop.Token;
        try
        {
            while (true)
            {
                await _time.WhenTimerScheduledAsync(token).ConfigureAwait(false);
                await _time.RunUntilIdleAsync(token).ConfigureAwait(false);
                if (_time.NextDueTime is not { } due) continue;
                var delta = due - _time.GetUtcNow();
                _time.Advance(delta > TimeSpan.Zero ? delta : TimeSpan.Zero);
                Steps++;
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}
