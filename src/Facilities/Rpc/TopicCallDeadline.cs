namespace P2PInference.Facilities.Rpc;

/// <summary>
/// A topic call's one deadline, applied to what the router does before any provider is called: the
/// provider lookup and the callee checks. <see cref="Token"/> fires at the deadline or when the
/// caller's token fires, so a slow lookup or a provider that never answers a check cannot make the
/// call outlive its timeout. The timer is set on first use: a call whose providers are cached and
/// whose checks answer at once (without waiting on the token) never asks for it.
/// </summary>
internal sealed class TopicCallDeadline : IDisposable
{
    private static readonly Action<object?> s_cancel = static s => ((CancellationTokenSource)s!).Cancel();

    private readonly DateTimeOffset? _deadline;
    private readonly TimeProvider _time;
    private readonly CancellationToken _caller;
    private CancellationTokenSource? _source;
    private CancellationTokenRegistration _callerRegistration;

    /// <param name="deadline">The call's deadline on <paramref name="time"/>; null for none (the token is then the caller's).</param>
    public TopicCallDeadline(DateTimeOffset? deadline, TimeProvider time, CancellationToken caller)
    {
        _deadline = deadline;
        _time = time;
        _caller = caller;
    }

    /// <summary>The caller's token, also cancelled when the deadline passes. Use from one flow at a time.</summary>
    public CancellationToken Token
    {
        get
        {
            if (_deadline is not { } deadline) return _caller;
            if (_source is null)
            {
                var left = deadline - _time.GetUtcNow();
                _source = new CancellationTokenSource(left > TimeSpan.Zero ? left : TimeSpan.Zero, _time);
                // Registered rather than linked through a second source, as RpcOutboundCall does.
                _callerRegistration = _caller.UnsafeRegister(s_cancel, _source);
            }
            return _source.Token;
        }
    }

    /// <summary>True when the deadline has passed and the caller has not cancelled: what ended a wait on <see cref="Token"/> was the deadline.</summary>
    public bool HasPassed =>
        _deadline is { } deadline && !_caller.IsCancellationRequested
        && (_source?.IsCancellationRequested == true || _time.GetUtcNow() >= deadline);

    public void Dispose()
    {
        _callerRegistration.Dispose();
        _source?.Dispose();
    }
}
