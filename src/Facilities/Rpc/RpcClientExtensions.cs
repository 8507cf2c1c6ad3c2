using System.Runtime.CompilerServices;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>Typed calls over any <see cref="IRpcClient"/>: messages in and out through an <see cref="IRpcCodec{T}"/>.</summary>
public static class RpcClientExtensions
{
    public static async Task<TResponse> RequestAsync<TRequest, TResponse>(this IRpcClient client, PeerId peer, string method, TRequest request,
        IRpcCodec<TRequest> requestCodec, IRpcCodec<TResponse> responseCodec, RpcCallOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(requestCodec);
        ArgumentNullException.ThrowIfNull(responseCodec);
        var response = await client.RequestAsync(peer, method, requestCodec.Encode(request), options, cancellationToken);
        return DecodeResponse(responseCodec, response, method);
    }

    /// <summary>A unary call with MessagePack contracts both ways.</summary>
    public static Task<TResponse> RequestAsync<TRequest, TResponse>(this IRpcClient client, PeerId peer, string method, TRequest request,
        MessagePackRpcCodec<TResponse> responseCodec, RpcCallOptions? options = null, CancellationToken cancellationToken = default)
        where TRequest : class
        where TResponse : class =>
        client.RequestAsync(peer, method, request, MessagePackRpcCodec<TRequest>.Instance, responseCodec, options, cancellationToken);

    public static async Task<TResponse> RequestTopicAsync<TRequest, TResponse>(this IRpcClient client, string topic, string method, TRequest request,
        MessagePackRpcCodec<TResponse> responseCodec, RpcCallOptions? options = null, CancellationToken cancellationToken = default)
        where TRequest : class
        where TResponse : class
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(responseCodec);
        var body = MessagePackRpcCodec<TRequest>.Instance.Encode(request);
        var response = await client.RequestTopicAsync(topic, method, body, options, cancellationToken);
        return DecodeResponse(responseCodec, response, method);
    }

    public static IAsyncEnumerable<TResponse> RequestStreamAsync<TRequest, TResponse>(this IRpcClient client, PeerId peer, string method,
        TRequest request, MessagePackRpcCodec<TResponse> responseCodec, RpcCallOptions? options = null, CancellationToken cancellationToken = default)
        where TRequest : class
        where TResponse : class
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(responseCodec);
        var body = MessagePackRpcCodec<TRequest>.Instance.Encode(request);
        return DecodeEach(client.RequestStreamAsync(peer, method, body, options, cancellationToken), responseCodec, method, cancellationToken);
    }

    public static IAsyncEnumerable<TResponse> RequestTopicStreamAsync<TRequest, TResponse>(this IRpcClient client, string topic, string method,
        TRequest request, MessagePackRpcCodec<TResponse> responseCodec, RpcCallOptions? options = null, CancellationToken cancellationToken = default)
        where TRequest : class
        where TResponse : class
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(responseCodec);
        var body = MessagePackRpcCodec<TRequest>.Instance.Encode(request);
        return DecodeEach(client.RequestTopicStreamAsync(topic, method, body, options, cancellationToken), responseCodec, method, cancellationToken);
    }

    private static async IAsyncEnumerable<T> DecodeEach<T>(IAsyncEnumerable<byte[]> items, IRpcCodec<T> codec, string method,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var item in items.WithCancellation(cancellationToken))
            yield return DecodeResponse(codec, item, method);
    }

    private static T DecodeResponse<T>(IRpcCodec<T> codec, byte[] payload, string method)
    {
        try
        {
            return codec.Decode(payload);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new RpcException(RpcStatusCode.Internal, $"malformed response to '{method}': {e.Message}", innerException: e);
        }
    }
}
