using System.Runtime.CompilerServices;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// The <see cref="IRpcServer"/> a worker registers its handlers on: it counts calls in flight and,
/// once <see cref="BeginDraining"/> was called, answers new calls with Unavailable ("worker is
/// stopping", <see cref="RpcException.RefusedBeforeAnyWork"/>, so the caller gets it marked
/// <see cref="RpcException.NotDelivered"/>) and fails over to another provider, even with a call that
/// is not idempotent, while calls already running finish.
/// </summary>
/// <remarks>
/// A wrapper rather than a change to <see cref="RpcNode"/>: draining is the runtime's policy, and it
/// works the same over the real node and the TestKit twin.
/// </remarks>
public sealed class DrainingRpcServer : IRpcServer
{
    public const string StoppingMessage = "worker is stopping";

    private readonly IRpcServer _inner;
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _inFlight;
    private volatile bool _draining;

    public DrainingRpcServer(IRpcServer inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        _inner = inner;
    }

    /// <summary>Calls of the worker's methods running now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    public bool IsDraining => _draining;

    /// <summary>Completes once draining began and no call is in flight.</summary>
    public Task Drained => _drained.Task;

    public IReadOnlySet<PeerId>? AllowedPeers
    {
        get => _inner.AllowedPeers;
        set => _inner.AllowedPeers = value;
    }

    public void Respond(string method, RpcHandler handler, RpcMethodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _inner.Respond(method, async (request, context) =>
        {
            Enter();
            try
            {
                return await handler(request, context);
            }
            finally
            {
                Exit();
            }
        }, options);
    }

    public void RespondStreaming(string method, RpcStreamingHandler handler, RpcMethodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _inner.RespondStreaming(method, (request, context) => Track(handler, request, context, context.CancellationToken), options);
    }

    public bool Unrespond(string method) => _inner.Unrespond(method);

    /// <summary>From now on new calls are refused; <see cref="Drained"/> completes when the running ones end.</summary>
    public void BeginDraining()
    {
        _draining = true;
        if (Volatile.Read(ref _inFlight) == 0) _drained.TrySetResult();
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> Track(RpcStreamingHandler handler, ReadOnlyMemory<byte> request, RpcCallContext context,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Enter();
        try
        {
            await foreach (var item in handler(request, context).WithCancellation(cancellationToken))
                yield return item;
        }
        finally
        {
            Exit();
        }
    }

    private void Enter()
    {
        Interlocked.Increment(ref _inFlight);
        // Checked after counting, so BeginDraining either sees this call or this call sees the flag.
        if (!_draining) return;
        Exit();
        // Refused before the worker's handler ran: the caller gets it marked not delivered, and may go elsewhere.
        throw RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable, StoppingMessage);
    }

    private void Exit()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && _draining) _drained.TrySetResult();
    }
}
