using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>One provider's answer to <see cref="IRpcClient.RequestAllAsync"/>: its response or its error.</summary>
public sealed record RpcPeerResult(PeerId Peer, byte[]? Response, RpcException? Error)
{
    public bool IsSuccess => Error is null;
}
