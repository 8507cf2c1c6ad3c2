using P2PInference.Facilities.Net;

namespace P2PInference.Facilities.Rpc;

/// <summary>The remote broke the RPC protocol: a response frame of the wrong kind, or a stream that ended without an answer.</summary>
public sealed class RpcProtocolException(string message, Exception? inner = null)
    : WireProtocolException(RpcNode.ProtocolId, message, inner);
