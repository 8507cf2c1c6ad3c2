using System.Runtime.CompilerServices;

namespace P2PInference.Facilities.Rpc;

/// <summary>Typed handlers over any <see cref="IRpcServer"/>: a request that does not decode is answered with InvalidArgument.</summary>
public static class RpcServerExtensions
{
    public static void Respond<TRequest, TResponse>(this IRpcServer server, string method, IRpcCodec<TRequest> requestCodec,
        IRpcCodec<TResponse> responseCodec, Func<TRequest, RpcCallContext, ValueTask<TResponse>> handler, RpcMethodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(requestCodec);
        ArgumentNullException.ThrowIfNull(responseCodec);
        ArgumentNullException.ThrowIfNull(handler);
        server.Respond(method, async (payload, context) =>
        {
            var request = DecodeRequest(requestCodec, payload, method);
            return responseCodec.Encode(await handler(request, context));
        }, options);
    }

    /// <summary>A unary handler with MessagePack contracts both ways.</summary>
    public static void Respond<TRequest, TResponse>(this IRpcServer server, string method, MessagePackRpcCodec<TRequest> requestCodec,
        Func<TRequest, RpcCallContext, ValueTask<TResponse>> handler, RpcMethodOptions? options = null)
        where TRequest : class
        where TResponse : class =>
        server.Respond(method, requestCodec, MessagePackRpcCodec<TResponse>.Instance, handler, options);

    public static void RespondStreaming<TRequest, TResponse>(this IRpcServer server, string method, MessagePackRpcCodec<TRequest> requestCodec,
        Func<TRequest, RpcCallContext, IAsyncEnumerable<TResponse>> handler, RpcMethodOptions? options = null)
        where TRequest : class
        where TResponse : class
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(requestCodec);
        ArgumentNullException.ThrowIfNull(handler);
        server.RespondStreaming(method, (payload, context) => Stream(handler(DecodeRequest(requestCodec, payload, method), context), context.CancellationToken), options);

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Stream(IAsyncEnumerable<TResponse> items, [EnumeratorCancellation] CancellationToken ct)
        {
            var codec = MessagePackRpcCodec<TResponse>.Instance;
            await foreach (var item in items.WithCancellation(ct))
                yield return codec.Encode(item);
        }
    }

    private static T DecodeRequest<T>(IRpcCodec<T> codec, ReadOnlyMemory<byte> payload, string method)
    {
        try
        {
            return codec.Decode(payload);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new RpcException(RpcStatusCode.InvalidArgument, $"malformed request to '{method}': {e.Message}", innerException: e);
        }
    }
}
