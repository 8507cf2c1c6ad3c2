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

    public TrustedRpcServer(IRpcServer inner, GrantVerifier verifier, GrantRole requiredRole)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(verifier);
        _inner = inner;
        _verifier = verifier;
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
            return handler(request, context);
        }, options);
    }

    public void RespondStreaming(string method, RpcStreamingHandler handler, RpcMethodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _inner.RespondStreaming(method, (request, context) => Checked(request, context, handler), options);

        IAsyncEnumerable<ReadOnlyMemory<byte>> Checked(ReadOnlyMemory<byte> request, RpcCallContext context, RpcStreamingHandler inner)
        {
            // Checked when the call arrives, not when the stream is first pulled: the handler never starts for a refused caller.
            ThrowUnlessGranted(context);
            return inner(request, context);
        }
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
