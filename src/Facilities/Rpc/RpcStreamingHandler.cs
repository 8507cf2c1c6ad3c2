namespace P2PInference.Facilities.Rpc;

/// <summary>
/// Serves a streaming call: each item is sent to the caller as it is produced. Enumeration is
/// cancelled with <see cref="RpcCallContext.CancellationToken"/> when the caller goes away.
/// </summary>
public delegate IAsyncEnumerable<ReadOnlyMemory<byte>> RpcStreamingHandler(ReadOnlyMemory<byte> request, RpcCallContext context);
