namespace P2PInference.Facilities.Rpc;

/// <summary>Serves a unary call: the request's bytes in, the response's bytes out. Throw <see cref="RpcException"/> to answer with a code.</summary>
public delegate ValueTask<ReadOnlyMemory<byte>> RpcHandler(ReadOnlyMemory<byte> request, RpcCallContext context);
