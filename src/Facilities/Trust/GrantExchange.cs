using P2PInference.Facilities.Rpc;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// How grants travel, on the RPC protocol itself so it works over any <see cref="IRpcClient"/>:
/// a callee proves its role by answering <see cref="Method"/> (an empty request) with its encoded
/// grant, which the caller checks before it sends the first byte of a real request; a caller proves
/// its own role by sending its grant with every request, in metadata <see cref="MetadataKey"/>.
/// Either way the grant is checked against the peer the Noise handshake authenticated.
/// </summary>
public static class GrantExchange
{
    public const string Method = "trust.grant";

    public const string MetadataKey = "p2p-grant";

    /// <summary>Answers <see cref="Method"/> with <paramref name="grant"/> (empty when the node holds none).</summary>
    public static void Serve(IRpcServer server, RoleGrant? grant) => Serve(server, grant is null ? null : new HeldGrant(grant));

    /// <summary>Answers <see cref="Method"/> with the grant <paramref name="grant"/> holds at the time of each question (empty when none).</summary>
    public static void Serve(IRpcServer server, HeldGrant? grant)
    {
        ArgumentNullException.ThrowIfNull(server);
        server.Respond(Method, (_, _) => ValueTask.FromResult(grant?.Bytes ?? ReadOnlyMemory<byte>.Empty));
    }
}
