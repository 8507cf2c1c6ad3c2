using System.Runtime.CompilerServices;
using Google.Protobuf;
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
        var response = await client.RequestAsync(peer, method, requestCodec.Encode(request), options, cancellationToken).ConfigureAwait(false);
        return DecodeResponse(responseCodec, response, method);
    }

    public static Task<TResponse> RequestAsync<TRequest, TResponse>(this IRpcClient client, PeerId peer, string method, TRequest request,
        MessageParser<TResponse> responseParser, RpcCallOptions? options = null, CancellationToken cancellationToken = default)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse> =>
        client.RequestAsync(peer, method, request, new ProtobufEncoder<TRequest>(), new ProtobufRpcCodec<TResponse>(responseParser),
            options, cancellationToken);

    public static async Task<TResponse> RequestTopicAsync<TRequest, TResponse>(this IRpcClient client, string topic, string method, TRequest request,
        MessageParser<TResponse> responseParser, RpcCallOptions? options = null, CancellationToken cancellationToken = default)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(request);
        var response = await client.RequestTopicAsync(topic, method, request.ToByteArray(), options, cancellationToken).ConfigureAwait(false);
        return DecodeResponse(new ProtobufRpcCodec<TResponse>(responseParser), response, method);
    }

    public static async IAsyncEnumerable<TResponse> RequestStreamAsync<TRequest, TResponse>(this IRpcClient client, PeerId peer, string method,
        TRequest request, MessageParser<TResponse> responseParser, RpcCallOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(request);
        var codec = new ProtobufRpcCodec<TResponse>(responseParser);
        await foreach (var item in client.RequestStreamAsync(peer, method, request.ToByteArray(), options, cancellationToken).ConfigureAwait(false))
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
