using System.Collections.Frozen;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// The grant a node presents, replaceable while it runs (renewed before it expires, or a new one from
/// the operator): the grant exchange and the metadata sent with every request read the current one.
/// </summary>
public sealed class HeldGrant
{
    private volatile Presentation _current;

    public HeldGrant(RoleGrant grant) => _current = Present(grant);

    public RoleGrant Current => _current.Grant;

    /// <summary>The current grant's encoding, as the grant exchange answers it.</summary>
    public ReadOnlyMemory<byte> Bytes => _current.Bytes;

    /// <summary>Request metadata carrying the current grant (<see cref="GrantExchange.MetadataKey"/>).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _current.Metadata;

    /// <summary>Presents <paramref name="grant"/> from now on.</summary>
    /// <exception cref="ArgumentException">It names another peer, role or cluster: a node's grant changes its dates and serial, nothing else.</exception>
    public void Replace(RoleGrant grant)
    {
        ArgumentNullException.ThrowIfNull(grant);
        var held = _current.Grant;
        if (grant.Peer != held.Peer || grant.Role != held.Role || grant.Cluster != held.Cluster)
            throw new ArgumentException($"{grant} does not replace {held}: it names another peer, role or cluster", nameof(grant));
        _current = Present(grant);
    }

    private static Presentation Present(RoleGrant grant)
    {
        ArgumentNullException.ThrowIfNull(grant);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal) { [GrantExchange.MetadataKey] = grant.ToText() };
        return new Presentation(grant, grant.ToBytes(), metadata.ToFrozenDictionary(StringComparer.Ordinal));
    }

    private sealed record Presentation(RoleGrant Grant, byte[] Bytes, IReadOnlyDictionary<string, string> Metadata);
}
