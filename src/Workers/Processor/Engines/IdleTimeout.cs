namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// Cancels when nothing happened for the given time; <see cref="Reset"/> says something did.
/// Runs on the injected clock, so tests drive it with fake time.
/// </summary>
internal sealed class IdleTimeout : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly TimeSpan _timeout;
    private readonly ITimer? _timer;
    private volatile bool _timedOut;

    public IdleTimeout(TimeSpan timeout, TimeProvider timeProvider)
    {
        _timeout = timeout;
        if (timeout != System.Threading.Timeout.InfiniteTimeSpan)
            _timer = timeProvider.CreateTimer(static state => ((IdleTimeout)state!).Fire(), this, timeout, System.Threading.Timeout.InfiniteTimeSpan);
    }

    public CancellationToken Token => _source.Token;

    public bool TimedOut => _timedOut;

    public TimeSpan Timeout => _timeout;

    public void Reset()
    {
        if (!_timedOut) _timer?.Change(_timeout, System.Threading.Timeout.InfiniteTimeSpan);
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _source.Dispose();
    }

    private void Fire()
    {
        _timedOut = true;
        try
        {
            _source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The request already finished; nothing to cancel.
        }
    }
}
