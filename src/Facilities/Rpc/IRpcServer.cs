using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>The serving half of RPC: methods by name, and who may call them.</summary>
public interface IRpcServer
{
    /// <summary>Serves unary calls of <paramref name="method"/>, replacing any earlier handler of that name.</summary>
    void Respond(string method, RpcHandler handler, RpcMethodOptions? options = null);

    /// <summary>Serves streaming calls of <paramref name="method"/>, replacing any earlier handler of that name.</summary>
    void RespondStreaming(string method, RpcStreamingHandler handler, RpcMethodOptions? options = null);

    /// <summary>Stops serving <paramref name="method"/>; later calls get <see cref="RpcStatusCode.UnknownMethod"/>.</summary>
    bool Unrespond(string method);

    /// <summary>Server-wide firewall: only these peers may call at all; null lets everyone in. Takes effect for new calls.</summary>
    IReadOnlySet<PeerId>? AllowedPeers { get; set; }
}
