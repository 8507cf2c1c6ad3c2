using System.Runtime.CompilerServices;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// Deny by default on the serving side: every handler registered through it first checks that the
/// caller sent (metadata <see cref="GrantExchange.MetadataKey"/>) a valid grant of the
/// <see cref="RequiredRole"/> naming the caller's own PeerId; other callers get
/// <see cref="RpcStatusCode.PermissionDenied"/> before the handler sees the request, marked
/// <see cref="RpcException.NotDelivered"/> (<see cref="RpcException.RefusedBeforeAnyWork"/>). The server's
/// and the methods' peer firewalls (<see cref="AllowedPeers"/>, <see cref="RpcMethodOptions"/>) still apply on top.
/// </summary>
public sealed class TrustedRpcServer : IRpcServer
{
    private readonly IRpcServer _inner;
    private readonly GrantVerifier _verifier;
    private readonly TrustedRpcClient? _revocationSource;

    /// <param name="revocationSource">
    /// When given, a granted caller that names a newer signed revocation list than the one held
    /// (<see cref="RevocationExchange.MetadataKey"/>) is asked for it through this client before its request is served,
    /// and its grant is checked again against what came.
    /// </param>
    public TrustedRpcServer(IRpcServer inner, GrantVerifier verifier, GrantRole requiredRole, TrustedRpcClient? revocationSource = null)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(verifier);
        _inner = inner;
        _verifier = verifier;
        _revocationSource = revocationSource;
        RequiredRole = requiredRole;
    }

    public GrantRole RequiredRole { get; }

    public IReadOnlySet<PeerId>? AllowedPeers
    {
        get => _inner.AllowedPeers;
        set => _inner.AllowedPeers = value;
    }

    public void Respond(string method, RpcHandler handler, RpcMethodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _inner.Respond(method, (request, context) =>
        {
            ThrowUnlessGranted(context);
            var catchUp = CatchUp(context);
            return catchUp.IsCompleted ? handler(request, context) : AfterCatchUpAsync(catchUp, request, context, handler);
        }, options);
    }

    private async ValueTask<ReadOnlyMemory<byte>> AfterCatchUpAsync(Task catchUp, ReadOnlyMemory<byte> request, RpcCallContext context, RpcHandler handler)
    {
        await catchUp;
        ThrowUnlessGranted(context);
        return await handler(request, context);
    }

    /// <summary>The question to a caller that claims a newer revocation list; completed at once when there is none to ask.</summary>
    private Task CatchUp(RpcCallContext context) =>
        _revocationSource is not null && RevocationExchange.ClaimedIssued(context.Metadata) is { } claimed
            ? _revocationSource.CatchUpRevocationsAsync(context.RemotePeer, claimed, context.CancellationToken)
            : Task.CompletedTask;

    public void RespondStreaming(string method, RpcStreamingHandler handler, RpcMethodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _inner.RespondStreaming(method, (request, context) => Checked(request, context, handler), options);

        IAsyncEnumerable<ReadOnlyMemory<byte>> Checked(ReadOnlyMemory<byte> request, RpcCallContext context, RpcStreamingHandler inner)
        {
            // Checked when the call arrives, not when the stream is first pulled: the handler never starts for a refused caller.
            ThrowUnlessGranted(context);
            var catchUp = CatchUp(context);
            return catchUp.IsCompleted ? inner(request, context) : AfterCatchUpStreamingAsync(catchUp, request, context, inner);
        }
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> AfterCatchUpStreamingAsync(Task catchUp, ReadOnlyMemory<byte> request, RpcCallContext context,
        RpcStreamingHandler inner)
    {
        await catchUp;
        ThrowUnlessGranted(context);
        await foreach (var item in inner(request, context)) yield return item;
    }

    public bool Unrespond(string method) => _inner.Unrespond(method);

    private void ThrowUnlessGranted(RpcCallContext context)
    {
        context.Metadata.TryGetValue(GrantExchange.MetadataKey, out var text);
        if (_verifier.Check(text, context.RemotePeer, RequiredRole, out _) is { } reason)
            // Before the handler: the caller gets it marked not delivered, which tells it that this is a refusal of the
            // caller itself, not the handler's verdict on the request (a gateway must not take it for its user's credential).
            throw RpcException.RefusedBeforeAnyWork(RpcStatusCode.PermissionDenied,
                $"this node serves only peers holding a {RequiredRole.Name()} grant of cluster {_verifier.Cluster}; {reason}");
    }
}
