using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// How one call is made. The effective deadline is the earlier of <see cref="Timeout"/> from now and
/// <see cref="Deadline"/>; with neither, <see cref="RpcOptions.DefaultTimeout"/> applies.
/// </summary>
public sealed record RpcCallOptions
{
    public static readonly RpcCallOptions Default = new();

    /// <summary>
    /// The longest a call may be given: 4,294,967,294 ms (about 49.7 days), the longest a timer can
    /// wait (<c>Timer.MaxSupportedTimeout</c>). A caller asking for more gets
    /// <see cref="RpcStatusCode.InvalidArgument"/> before anything is sent, and a server refuses a request
    /// envelope asking for more the same way, marked <see cref="RpcException.NotDelivered"/>. No
    /// deadline at all is a timeout of 0 on the wire.
    /// </summary>
    public static readonly TimeSpan MaxTimeout = Threading.TimerLimits.Longest;

    /// <summary>Time allowed from the start of the call; past it the caller gets <see cref="RpcStatusCode.DeadlineExceeded"/>.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>An absolute deadline on this node's <see cref="TimeProvider"/> (e.g. one inherited from the call being served).</summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>Safe to run twice: a topic call fails over to another provider on connection errors.</summary>
    public bool Idempotent { get; init; }

    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>
    /// Topic calls: asked about each provider before any byte of the request goes to it; an exception
    /// (its message saying why) skips that provider without counting as an attempt, null lets the call
    /// go. Providers skipped by it appear in <see cref="IRpcClient.RequestAllAsync"/>'s results with its
    /// exception as their error (<see cref="RpcPeerResult.Skipped"/>).
    /// Its token also fires at the call's deadline: a check still running then ends the call with
    /// <see cref="RpcStatusCode.DeadlineExceeded"/>, as a provider lookup still running does.
    /// The trust layer uses it to call only providers that proved their role.
    /// </summary>
    public Func<PeerId, CancellationToken, ValueTask<RpcException?>>? CalleeCheck { get; init; }

    /// <summary>Names this call; one is generated when null.</summary>
    public string? RequestId { get; init; }

    /// <summary>Groups the calls made for one user request; inherited by <see cref="FromContext"/>, generated when null.</summary>
    public string? TraceId { get; init; }

    /// <summary>
    /// Options for a call made while serving <paramref name="context"/>: it inherits the remaining
    /// time (the served call's deadline) and the trace id, so a gateway forwarding a call passes on
    /// what is left of its caller's budget. Pass <see cref="RpcCallContext.CancellationToken"/> as the
    /// call's token so the forwarded call stops when the served one is cancelled.
    /// </summary>
    public static RpcCallOptions FromContext(RpcCallContext context, bool idempotent = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new RpcCallOptions { Deadline = context.Deadline, TraceId = context.TraceId, Idempotent = idempotent };
    }

    /// <summary>The effective absolute deadline of a call starting now, or null for none.</summary>
    public DateTimeOffset? ResolveDeadline(TimeProvider time, TimeSpan? defaultTimeout)
    {
        ArgumentNullException.ThrowIfNull(time);
        var now = time.GetUtcNow();
        DateTimeOffset? deadline = Deadline;
        if (Timeout is { } timeout)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero, nameof(Timeout));
            var byTimeout = now + timeout;
            deadline = deadline is null || byTimeout < deadline ? byTimeout : deadline;
        }
        if (deadline is null && defaultTimeout is { } fallback) deadline = now + fallback;
        return deadline;
    }
}
