using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>Per-method settings given to <see cref="IRpcServer.Respond"/>.</summary>
public sealed record RpcMethodOptions
{
    /// <summary>Only these peers may call the method (others get <see cref="RpcStatusCode.PermissionDenied"/>); null lets in everyone the server lets in.</summary>
    public IReadOnlySet<PeerId>? AllowedPeers { get; init; }
}
