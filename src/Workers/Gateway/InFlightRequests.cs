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
        registration.CancelByRequest();
        return true;
    }

    public void CancelAll()
    {
        foreach (var (_, registration) in _running) registration.CancelByRequest();
    }

    // Only this registration: a later request that reused the id after it ended keeps its entry.
    private void Remove(Registration registration) =>
        _running.TryRemove(KeyValuePair.Create((registration.UserId, registration.RequestId), registration));

    /// <summary>One running request; dispose it when the request ends.</summary>
    public sealed class Registration : IDisposable
    {
        private readonly InFlightRequests _owner;
        private readonly CancellationTokenSource _source;
        private int _cancelledByRequest;

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

        public bool CancelledByRequest => Volatile.Read(ref _cancelledByRequest) != 0;

        internal void CancelByRequest()
        {
            Volatile.Write(ref _cancelledByRequest, 1);
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
