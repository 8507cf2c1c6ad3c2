using System.Collections.Concurrent;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Gateway;

/// <summary>
/// The inference requests running on this gateway, by user and request id, so that <c>cancel</c>
/// can stop one: cancelling its token ends the call to the processor, which resets the processor's
/// stream and so stops its engine. A user can only see and cancel their own requests.
/// </summary>
/// <remarks>Every request registers and leaves: a concurrent map, so that requests do not queue on one lock.</remarks>
internal sealed class InFlightRequests
{
    private readonly ConcurrentDictionary<(string UserId, string RequestId), Registration> _running = new();

    public int Count => _running.Count;

    /// <exception cref="RpcException"><see cref="RpcStatusCode.AlreadyExists"/>: the user already runs a request with this id.</exception>
    public Registration Register(string userId, string requestId, CancellationToken callToken)
    {
        var registration = new Registration(this, userId, requestId, callToken);
        if (_running.TryAdd((userId, requestId), registration)) return registration;
        registration.Abandon();
        throw new RpcException(RpcStatusCode.AlreadyExists, $"a request with id '{requestId}' is already running; use another id");
    }

    /// <summary>False when <paramref name="userId"/> runs no request <paramref name="requestId"/>.</summary>
    public bool Cancel(string userId, string requestId)
    {
        if (!_running.TryGetValue((userId, requestId), out var registration)) return false;
        registration.Cancel(ByRequest);
        return true;
    }

    /// <summary>The gateway stops: every running request ends, as the gateway's doing, not its client's.</summary>
    public void CancelAll()
    {
        foreach (var (_, registration) in _running) registration.Cancel(Stopping);
    }

    private const int ByRequest = 1;
    private const int Stopping = 2;

    // Only this registration: a later request that reused the id after it ended keeps its entry.
    private void Remove(Registration registration) =>
        _running.TryRemove(KeyValuePair.Create((registration.UserId, registration.RequestId), registration));

    /// <summary>One running request; dispose it when the request ends.</summary>
    public sealed class Registration : IDisposable
    {
        private readonly InFlightRequests _owner;
        private readonly CancellationTokenSource _source;
        private int _cancelledFor;

        internal Registration(InFlightRequests owner, string userId, string requestId, CancellationToken callToken)
        {
            _owner = owner;
            UserId = userId;
            RequestId = requestId;
            _source = CancellationTokenSource.CreateLinkedTokenSource(callToken);
        }

        public string UserId { get; }

        public string RequestId { get; }

        /// <summary>Fires when the served call ends or a cancel for this request arrives.</summary>
        public CancellationToken Token => _source.Token;

        /// <summary>A cancel for this request arrived, or the gateway stopped under it.</summary>
        public bool Cancelled => Volatile.Read(ref _cancelledFor) != 0;

        /// <summary>
        /// What the client is told of a request <see cref="Cancelled"/> here: its own cancel is Cancelled; the
        /// gateway stopping under it is Unavailable, which a client may retry elsewhere and must not take for
        /// a cancel of its own.
        /// </summary>
        public RpcException CancelledError() => Volatile.Read(ref _cancelledFor) == ByRequest
            ? new RpcException(RpcStatusCode.Cancelled, $"request '{RequestId}' was cancelled")
            : new RpcException(RpcStatusCode.Unavailable, $"the gateway stopped before request '{RequestId}' finished");

        /// <summary>For the log: who ended it.</summary>
        public string CancelledBy => Volatile.Read(ref _cancelledFor) == ByRequest ? "the client" : "the gateway stopping";

        internal void Cancel(int reason)
        {
            // The first reason stands: a cancel that races a stop is reported as whichever came first.
            Interlocked.CompareExchange(ref _cancelledFor, reason, 0);
            try
            {
                _source.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The request ended as the cancel arrived.
            }
        }

        /// <summary>Never registered (its id was taken): only its token source goes.</summary>
        internal void Abandon() => _source.Dispose();

        public void Dispose()
        {
            _owner.Remove(this);
            _source.Dispose();
        }
    }
}
