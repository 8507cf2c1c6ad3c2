using System.Buffers.Binary;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// How the operator's signed revocation list (<see cref="SignedRevocationList"/>) spreads: every worker answers
/// <see cref="Method"/> with the newest list it holds when the caller's is older, and a caller asks each peer
/// whose grant it has just checked and found valid (<see cref="TrustedRpcClient"/>), then checks that grant again
/// against what it got. Gateways ask Auth and processors, clients ask gateways; so a list the operator gives Auth
/// or the processors reaches gateways and clients within a grant cache period of their next call. The other way, a
/// caller names the issue time of its list with each request (<see cref="MetadataKey"/>) and a callee holding an
/// older one asks it back before serving, so a list given to a gateway reaches Auth and the processors with the
/// gateway's next call to each. Peers without a valid grant are never asked. The list is signed, so a peer can only withhold it: a revoked gateway will not
/// hand on the list that revokes it, and a client that meets only that gateway learns nothing from it.
/// </summary>
public static class RevocationExchange
{
    public const string Method = "trust.revocations";

    /// <summary>
    /// Request metadata in which a caller holding a signed list names its issue time (unix milliseconds), so that a
    /// callee that checks callers' grants instead of asking for callees' (Auth, processors) learns that the caller
    /// has a newer list and asks it back (<see cref="TrustedRpcServer"/>).
    /// </summary>
    public const string MetadataKey = "p2p-revocations";

    /// <summary>The issue time a caller claims in <see cref="MetadataKey"/>; null when it claims none or the value is not a number.</summary>
    public static long? ClaimedIssued(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return metadata.TryGetValue(MetadataKey, out var text)
               && long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var issued)
            ? issued
            : null;
    }

    /// <summary>
    /// Answers <see cref="Method"/> from <paramref name="verifier"/>'s signed list. The request is the issue time of the
    /// caller's list (8 bytes, unix milliseconds, big-endian) or empty when it holds none; the answer is the list when
    /// it is newer than that, else empty, so a peer that is up to date is sent nothing.
    /// </summary>
    public static void Serve(IRpcServer server, GrantVerifier verifier)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(verifier);
        server.Respond(Method, (request, _) =>
        {
            var held = verifier.SignedRevocations;
            if (held is null) return ValueTask.FromResult(ReadOnlyMemory<byte>.Empty);
            // Anything but 8 bytes reads as "holds none": the answer is at most one list whatever was asked.
            var callerHas = request.Length == 8 ? BinaryPrimitives.ReadInt64BigEndian(request.Span) : long.MinValue;
            return ValueTask.FromResult(held.Issued.ToUnixTimeMilliseconds() > callerHas ? held.Bytes : ReadOnlyMemory<byte>.Empty);
        });
    }

    /// <summary>The request asking for a list newer than <paramref name="held"/>.</summary>
    public static byte[] Request(SignedRevocationList? held)
    {
        if (held is null) return [];
        var request = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(request, held.Issued.ToUnixTimeMilliseconds());
        return request;
    }
}
