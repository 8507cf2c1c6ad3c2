using System.Runtime.CompilerServices;
using Google.Protobuf;

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
            return responseCodec.Encode(await handler(request, context).ConfigureAwait(false));
        }, options);
    }

    public static void Respond<TRequest, TResponse>(this IRpcServer server, string method, MessageParser<TRequest> requestParser,
        Func<TRequest, RpcCallContext, ValueTask<TResponse>> handler, RpcMethodOptions? options = null)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse> =>
        server.Respond(method, new ProtobufRpcCodec<TRequest>(requestParser), new ProtobufEncoder<TResponse>(), handler, options);

    public static void RespondStreaming<TRequest, TResponse>(this IRpcServer server, string method, MessageParser<TRequest> requestParser,
        Func<TRequest, RpcCallContext, IAsyncEnumerable<TResponse>> handler, RpcMethodOptions? options = null)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(handler);
        var codec = new ProtobufRpcCodec<TRequest>(requestParser);
        server.RespondStreaming(method, (payload, context) => Stream(handler(DecodeRequest(codec, payload, method), context), context.CancellationToken), options);

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Stream(IAsyncEnumerable<TResponse> items, [EnumeratorCancellation] CancellationToken ct)
        {
            await foreach (var item in items.WithCancellation(ct).ConfigureAwait(false))
                yield return item.ToByteArray();
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
