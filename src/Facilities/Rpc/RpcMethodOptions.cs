using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>Per-method settings given to <see cref="IRpcServer.Respond"/>.</summary>
public sealed record RpcMethodOptions
{
    /// <summary>Only these peers may call the method (others get <see cref="RpcStatusCode.PermissionDenied"/>); null lets in everyone the server lets in.</summary>
    public IReadOnlySet<PeerId>? AllowedPeers { get; init; }

    /// <summary>
    /// For a streaming method: items the handler has ready one after another leave together, in one
    /// write (one Yamux frame, one Noise message, one system call), up to 32 KiB. Set it only for
    /// handlers whose next item, when ready at once, costs no work — relaying another stream, say:
    /// an item computed synchronously would hold back the one before it until it is done.
    /// </summary>
    public bool CoalesceResponses { get; init; }
}
