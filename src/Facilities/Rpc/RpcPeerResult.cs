using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>One provider's answer to <see cref="IRpcClient.RequestAllAsync"/>: its response or its error.</summary>
public sealed record RpcPeerResult(PeerId Peer, byte[]? Response, RpcException? Error)
{
    public bool IsSuccess => Error is null;

    /// <summary>The callee check (<see cref="RpcCallOptions.CalleeCheck"/>) refused the peer: <see cref="Error"/> says why, and nothing was sent to it.</summary>
    public bool Skipped { get; init; }
}
