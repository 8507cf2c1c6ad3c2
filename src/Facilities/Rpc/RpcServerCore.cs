using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// What every RPC server does whatever carries its calls: method registry, firewall, per-peer
/// concurrency limit, deadlines, cancellation, and turning handler outcomes into status codes.
/// Every refusal before the handler runs is marked <see cref="RpcException.NotDelivered"/>, and so is a
/// deliberate refusal before any of the call's work (<see cref="RpcException.RefusedBeforeAnyWork"/>:
/// a wrapper's before it calls the real handler, a handler's at its very start); the mark is stripped
/// from anything else a handler throws.
/// Shared by <see cref="RpcNode"/> and the TestKit twin so both behave the same.
/// </summary>
internal sealed class RpcServerCore : IRpcServer
{
    private readonly ConcurrentDictionary<string, Registration> _methods = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<PeerId, PeerCount> _inFlight = new();
    private readonly ConcurrentDictionary<PeerId, PeerCount> _inFlightBytes = new();
    private readonly RpcOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private volatile IReadOnlySet<PeerId>? _allowedPeers;

    public RpcServerCore(RpcOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
        _allowedPeers = options.AllowedPeers;
    }

    public IReadOnlySet<PeerId>? AllowedPeers
    {
        get => _allowedPeers;
        set => _allowedPeers = value;
    }

    public CancellationToken Stopping => _stopping.Token;

    public void Respond(string method, RpcHandler handler, RpcMethodOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        ArgumentNullException.ThrowIfNull(handler);
        _methods[method] = new Registration(handler, null, options?.AllowedPeers, false);
    }

    public void RespondStreaming(string method, RpcStreamingHandler handler, RpcMethodOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        ArgumentNullException.ThrowIfNull(handler);
        _methods[method] = new Registration(null, handler, options?.AllowedPeers, options?.CoalesceResponses ?? false);
    }

    public bool Unrespond(string method) => _methods.TryRemove(method, out _);

    /// <summary>The server-wide firewall's verdict, checked before anything of the request is read.</summary>
    public RpcException? CheckCaller(PeerId caller) =>
        _allowedPeers is { } allowed && !allowed.Contains(caller)
            ? RpcException.Undelivered(RpcStatusCode.PermissionDenied, "this peer may not call this node")
            : null;

    /// <summary>Takes one of the caller's concurrent-call slots; false when it has none left.</summary>
    public bool TryEnter(PeerId caller) => TryTake(_inFlight, caller, 1, _options.MaxConcurrentCallsPerPeer);

    public void Exit(PeerId caller) => Give(_inFlight, caller, 1);

    /// <summary>Counts <paramref name="bytes"/> of a request against the caller's in-flight budget; false when it has no room (a caller with nothing in flight always has).</summary>
    public bool TryReserveBytes(PeerId caller, long bytes) => TryTake(_inFlightBytes, caller, bytes, _options.MaxInFlightBytesPerPeer);

    public void ReleaseBytes(PeerId caller, long bytes) => Give(_inFlightBytes, caller, bytes);

    /// <summary>
    /// Adds <paramref name="amount"/> to the caller's count unless that would pass <paramref name="limit"/> (a caller with
    /// nothing counted always gets in). A count exists only while it is above zero, so the map holds only peers with
    /// something in flight.
    /// </summary>
    /// <remarks>
    /// Each count changes under its own lock, and the <see cref="PeerCount"/> that reaches zero is marked removed in the
    /// same lock as it leaves the map. Without that (a bare Interlocked count), a caller could find the count, another
    /// call of the same peer bring it to zero and remove it, and the caller then add to the orphaned count: its slot or
    /// bytes counted nowhere the next call looks, and its release later taken off the peer's next count, which then
    /// undercounts for as long as it lives; repeated, the per-peer limits loosened. A caller that meets a removed count
    /// takes the fresh one instead. (Only real threads interleave so; a simulation runs these without a switch between.)
    /// </remarks>
    private static bool TryTake(ConcurrentDictionary<PeerId, PeerCount> counts, PeerId caller, long amount, long limit)
    {
        if (amount == 0) return true;
        while (true)
        {
            var count = counts.GetOrAdd(caller, static _ => new PeerCount());
            lock (count)
            {
                if (count.Removed) continue;
                if (count.Value > 0 && count.Value + amount > limit) return false;
                count.Value += amount;
                return true;
            }
        }
    }

    /// <summary>Takes back what <see cref="TryTake"/> added; the caller's share keeps the count above zero, so it is the one in the map.</summary>
    private static void Give(ConcurrentDictionary<PeerId, PeerCount> counts, PeerId caller, long amount)
    {
        if (amount == 0 || !counts.TryGetValue(caller, out var count)) return;
        lock (count)
        {
            count.Value -= amount;
            if (count.Value > 0) return;
            count.Removed = true;
            counts.TryRemove(new KeyValuePair<PeerId, PeerCount>(caller, count));
        }
    }

    /// <summary>What a peer has in flight (calls or request bytes); removed from its map, under its lock, when it reaches zero.</summary>
    private sealed class PeerCount
    {
        public long Value;
        public bool Removed;
    }

    public RpcException TooManyBytes(long bytes) =>
        RpcException.Undelivered(RpcStatusCode.ResourceExhausted,
            $"a request of {bytes} bytes would put more than {_options.MaxInFlightBytesPerPeer} bytes of this peer's requests in flight");

    public RpcException TooManyCalls() =>
        RpcException.Undelivered(RpcStatusCode.ResourceExhausted, $"more than {_options.MaxConcurrentCallsPerPeer} concurrent calls from this peer");

    /// <summary>The refusal of a request whose timeout is out of range (see <see cref="RpcCallOptions.MaxTimeout"/>); nothing of it ran.</summary>
    public static RpcException TimeoutTooLong(long timeoutMs) =>
        RpcException.Undelivered(RpcStatusCode.InvalidArgument,
            $"request timeout of {timeoutMs} ms is out of range: at most {(long)RpcCallOptions.MaxTimeout.TotalMilliseconds} ms (about 49.7 days); 0 means no deadline");

    public RpcException TooLarge(string what, long size) =>
        new(RpcStatusCode.ResourceExhausted, $"{what} of {size} bytes exceeds the limit of {_options.MaxMessageSize} bytes");

    /// <summary>
    /// Runs the handler of <paramref name="call"/>, handing each response payload to
    /// <paramref name="send"/>. Returns null when the call succeeded, else the error to answer with.
    /// </summary>
    /// <param name="send">Sends one response payload; with its flag set (a coalescing method's item) it may hold the payload, copied, until <paramref name="flush"/>.</param>
    /// <param name="flush">Sends what <paramref name="send"/> holds; called before the server waits for the handler's next item. Null: the carrier holds nothing.</param>
    public async Task<RpcException?> InvokeAsync(RpcInvocation call, Func<ReadOnlyMemory<byte>, bool, CancellationToken, ValueTask> send,
        CancellationToken callerGone, Func<CancellationToken, ValueTask>? flush = null)
    {
        if (!_methods.TryGetValue(call.Method, out var registration))
            return RpcException.Undelivered(RpcStatusCode.UnknownMethod, $"no method '{call.Method}'");
        if (registration.IsStreaming != call.Streaming)
            return RpcException.Undelivered(RpcStatusCode.UnknownMethod,
                $"method '{call.Method}' is {(registration.IsStreaming ? "streaming" : "unary")}; call it as such");
        if (registration.AllowedPeers is { } allowed && !allowed.Contains(call.Caller))
            return RpcException.Undelivered(RpcStatusCode.PermissionDenied, $"this peer may not call '{call.Method}'");
        if (call.Payload.Length > _options.MaxMessageSize) return TooLarge("request", call.Payload.Length).AsUndelivered();
        // Draining: a call that arrives while the server stops is refused before its handler runs.
        if (_stopping.IsCancellationRequested) return RpcException.Undelivered(RpcStatusCode.Unavailable, "the server is stopping");
        // The real node checks the envelope already; this holds for any carrier (the twin), before a timer is made of it.
        if (call.Timeout is { } requested && (requested < TimeSpan.Zero || requested > RpcCallOptions.MaxTimeout))
            return TimeoutTooLong((long)Math.Ceiling(requested.TotalMilliseconds));

        var time = _options.TimeProvider;
        var deadline = call.Timeout is { } timeout ? time.GetUtcNow() + timeout : (DateTimeOffset?)null;
        using var deadlineSource = call.Timeout is { } t ? new CancellationTokenSource(t, time) : null;
        // Two sources link without the array a third (absent) one would cost.
        using var linked = deadlineSource is null
            ? CancellationTokenSource.CreateLinkedTokenSource(callerGone, _stopping.Token)
            : CancellationTokenSource.CreateLinkedTokenSource(callerGone, _stopping.Token, deadlineSource.Token);
        var context = new RpcCallContext(call.Caller, call.Method, deadline, call.RequestId, call.TraceId, call.Metadata, time, linked.Token)
        {
            RemoteAddress = call.CallerAddress,
            RemoteOrigin = call.CallerOrigin,
        };
        var sending = false;
        try
        {
            if (registration.Unary is { } unary)
            {
                var response = await unary(call.Payload, context);
                if (response.Length > _options.MaxMessageSize) return TooLarge("response", response.Length);
                sending = true;
                await send(response, false, linked.Token);
            }
            else
            {
                var hold = registration.Coalesce && flush is not null;
                var items = registration.Streaming!(call.Payload, context).GetAsyncEnumerator(linked.Token);
                try
                {
                    while (true)
                    {
                        var next = items.MoveNextAsync();
                        // Held items go out before the server waits: coalescing never delays an item for one not yet made.
                        if (hold && !next.IsCompleted)
                        {
                            sending = true;
                            await flush!(linked.Token);
                            sending = false;
                        }
                        if (!await next) break;
                        // A handler that ignores its token must not be pulled forever after the caller left.
                        linked.Token.ThrowIfCancellationRequested();
                        var item = items.Current;
                        if (item.Length > _options.MaxMessageSize) return TooLarge("response item", item.Length);
                        sending = true;
                        await send(item, hold, linked.Token);
                        sending = false;
                    }
                }
                finally
                {
                    await items.DisposeAsync();
                }
            }
            return null;
        }
        catch (RpcException e) when (e.IsRefusedBeforeAnyWork)
        {
            // A wrapper (or the handler itself) turned the call away before any of its work, and said so deliberately. A
            // fresh error carries the mark: the caller's copy (handed over as it is by the twin) has no
            // flag a handler of the caller's could pass on by rethrowing it.
            return NotDeliveredCopy(e);
        }
        catch (RpcException e)
        {
            // The handler ran: whatever it forwards (say, a downstream call's refusal) must not tell
            // our caller that this call never arrived, or the caller could run it twice.
            return e.NotDelivered ? Delivered(e) : e;
        }
        catch (Exception e) when (linked.IsCancellationRequested && (e is OperationCanceledException || sending))
        {
            if (_stopping.IsCancellationRequested) return new RpcException(RpcStatusCode.Unavailable, "the server is stopping");
            if (deadlineSource?.IsCancellationRequested == true) return new RpcException(RpcStatusCode.DeadlineExceeded, "the deadline passed on the server");
            return new RpcException(RpcStatusCode.Cancelled, "the caller cancelled the call");
        }
        catch (Exception e) when (sending)
        {
            // The answer could not be delivered: the caller is gone, nobody will read an error either.
            _logger.LogDebug(e, "could not answer {Method} to {Peer}", call.Method, call.Caller);
            return new RpcException(RpcStatusCode.Cancelled, "the caller went away");
        }
        catch (OperationCanceledException e)
        {
            _logger.LogDebug(e, "handler of {Method} for {Peer} was cancelled", call.Method, call.Caller);
            return new RpcException(RpcStatusCode.Cancelled, CancelledMessage);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // An untyped exception's message can name files, hosts or internal state: it stays in our
            // log with its request id, and the caller gets the typed code and a fixed text naming that id.
            _logger.LogWarning(e, "handler of {Method} failed for {Peer} (request {RequestId})", call.Method, call.Caller, call.RequestId);
            return new RpcException(RpcStatusCode.Internal, InternalMessage(call.RequestId));
        }
    }

    private static RpcException NotDeliveredCopy(RpcException e) =>
        new(e.Code, e.Message, new Dictionary<string, string>(e.Details, StringComparer.Ordinal) { [RpcException.NotDeliveredKey] = "1" });

    private static RpcException Delivered(RpcException e)
    {
        var details = new Dictionary<string, string>(e.Details, StringComparer.Ordinal);
        details.Remove(RpcException.NotDeliveredKey);
        return new RpcException(e.Code, e.Message, details, e);
    }

    /// <summary>What a caller is told when a handler was cancelled by something other than the caller, the deadline or a stop.</summary>
    public const string CancelledMessage = "the call was cancelled on the server";

    /// <summary>What a caller is told when a handler failed with an exception that is not an <see cref="RpcException"/>.</summary>
    public static string InternalMessage(string? requestId) =>
        string.IsNullOrEmpty(requestId) ? "internal error" : $"internal error (request {requestId})";

    /// <summary>Cancels every running handler; their callers get <see cref="RpcStatusCode.Unavailable"/>.</summary>
    public void Stop()
    {
        try
        {
            _stopping.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private sealed record Registration(RpcHandler? Unary, RpcStreamingHandler? Streaming, IReadOnlySet<PeerId>? AllowedPeers, bool Coalesce)
    {
        public bool IsStreaming => Streaming is not null;
    }
}
