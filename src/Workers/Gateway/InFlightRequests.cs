using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Gateway;

/// <summary>
/// The inference requests running on this gateway, by user and request id, so that <c>cancel</c>
/// can stop one: cancelling its token ends the call to the processor, which resets the processor's
/// stream and so stops its engine. A user can only see and cancel their own requests.
/// </summary>
internal sealed class InFlightRequests
{
    private readonly object _gate = new();
    private readonly Dictionary<(string UserId, string RequestId), Registration> _running = [];

    public int Count
    {
        get
        {
            lock (_gate) return _running.Count;
        }
    }

    /// <exception cref="RpcException"><see cref="RpcStatusCode.AlreadyExists"/>: the user already runs a request with this id.</exception>
    public Registration Register(string userId, string requestId, CancellationToken callToken)
    {
        lock (_gate)
        {
            if (_running.ContainsKey((userId, requestId)))
                throw new RpcException(RpcStatusCode.AlreadyExists, $"a request with id '{requestId}' is already running; use another id");
            var registration = new Registration(this, userId, requestId, callToken);
            _running.Add((userId, requestId), registration);
            return registration;
        }
    }

    /// <summary>False when <paramref name="userId"/> runs no request <paramref name="requestId"/>.</summary>
    public bool Cancel(string userId, string requestId)
    {
        Registration? registration;
        lock (_gate)
        {
            if (!_running.TryGetValue((userId, requestId), out registration)) return false;
        }
        registration.CancelByRequest();
        return true;
    }

    public void CancelAll()
    {
        Registration[] all;
        lock (_gate) all = [.. _running.Values];
        foreach (var registration in all) registration.CancelByRequest();
    }

    private void Remove(Registration registration)
    {
        lock (_gate)
        {
            if (_running.TryGetValue((registration.UserId, registration.RequestId), out var current) && ReferenceEquals(current, registration))
                _running.Remove((registration.UserId, registration.RequestId));
        }
    }

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

        public void Dispose()
        {
            _owner.Remove(this);
            _source.Dispose();
        }
    }
}
