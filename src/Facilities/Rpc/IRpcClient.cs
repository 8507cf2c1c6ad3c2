using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// The calling half of RPC. Every failure is an <see cref="RpcException"/> with a code, except the
/// caller's own cancellation, which is an <see cref="OperationCanceledException"/>.
/// </summary>
public interface IRpcClient
{
    /// <summary>A unary call to <paramref name="peer"/>.</summary>
    Task<byte[]> RequestAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken);

    /// <summary>
    /// A streaming call: items arrive as the server produces them. Stopping the enumeration early
    /// cancels the call on the server. The deadline covers the whole stream.
    /// </summary>
    IAsyncEnumerable<byte[]> RequestStreamAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken);

    /// <summary>
    /// A unary call to one provider of <paramref name="topic"/>, chosen by load (power of two
    /// choices over in-flight calls and latency). An idempotent call fails over to another provider
    /// on connection errors; <see cref="RpcStatusCode.Unavailable"/> when there is none or none answers.
    /// </summary>
    Task<byte[]> RequestTopicAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken);

    /// <summary>
    /// A streaming call to one provider of <paramref name="topic"/>, chosen as <see cref="RequestTopicAsync"/>
    /// chooses. It fails over only before the first item arrives, under the same rules; after that a failure
    /// ends the stream as it would a call to one peer.
    /// </summary>
    IAsyncEnumerable<byte[]> RequestTopicStreamAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken);

    /// <summary>Calls every provider of <paramref name="topic"/> at once; one result per provider, failures included.</summary>
    Task<IReadOnlyList<RpcPeerResult>> RequestAllAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken);
}
