using System.Collections.Concurrent;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// Decides whether a grant lets a peer act in a role of one cluster: signed by the cluster's key, for
/// that role, naming that peer (the one the Noise handshake authenticated, never a claim), current on
/// this node's clock (with <see cref="ClockSkew"/> of slack each way) and not on the
/// <see cref="Revocations"/> list nor the <see cref="SignedRevocations"/>. Times and revocations are checked on every call, so an expired or
/// revoked grant is refused as soon as the clock passes or the list changes; only the parsing and
/// the signature check of a grant's bytes are remembered.
/// </summary>
public sealed class GrantVerifier
{
    /// <summary>Parsed grants remembered by their text; past this many the memory starts afresh.</summary>
    internal const int MaxCachedGrants = 4096;

    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, RoleGrant> _parsed = new(StringComparer.Ordinal);
    private volatile RevocationList _revocations = RevocationList.Empty;
    private SignedRevocationList? _signed;

    public GrantVerifier(ClusterId cluster, TimeProvider time, TimeSpan? clockSkew = null)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(time);
        Cluster = cluster;
        _time = time;
        ClockSkew = clockSkew ?? TimeSpan.FromMinutes(1);
        if (ClockSkew < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(clockSkew));
    }

    public ClusterId Cluster { get; }

    public TimeSpan ClockSkew { get; }

    public TimeProvider Time => _time;

    /// <summary>The operator's current revocation list; replaced whole when the file is reloaded.</summary>
    public RevocationList Revocations
    {
        get => _revocations;
        set => _revocations = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>
    /// The newest list the cluster key signed that this node holds, from the operator's file or from a peer
    /// (<see cref="RevocationExchange"/>); null when none. Its revocations apply beside <see cref="Revocations"/>.
    /// </summary>
    public SignedRevocationList? SignedRevocations => Volatile.Read(ref _signed);

    /// <summary>Takes <paramref name="list"/> in place of the signed list held, when the cluster key signed it and it was issued later.</summary>
    /// <param name="reason">Why it was not taken; null when it was.</param>
    public RevocationListAdoption Adopt(SignedRevocationList list, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(list);
        if (!list.IsSignedBy(Cluster))
        {
            reason = list.Cluster == Cluster ? "its signature does not verify under the cluster key" : $"it is of another cluster ({list.Cluster})";
            return RevocationListAdoption.Refused;
        }
        while (true)
        {
            var held = Volatile.Read(ref _signed);
            if (held is not null && list.Issued <= held.Issued)
            {
                reason = $"it is not newer than the list held, issued {held.Issued:u}";
                return RevocationListAdoption.NotNewer;
            }
            if (Interlocked.CompareExchange(ref _signed, list, held) == held)
            {
                reason = null;
                return RevocationListAdoption.Taken;
            }
        }
    }

    /// <summary>Why <paramref name="grant"/> does not let <paramref name="holder"/> act as <paramref name="role"/>, or null when it does.</summary>
    public string? Check(RoleGrant? grant, PeerId holder, GrantRole role)
    {
        ArgumentNullException.ThrowIfNull(holder);
        if (grant is null) return "it presented no grant";
        if (grant.Cluster != Cluster) return $"its grant is of another cluster ({grant.Cluster})";
        if (grant.Role != role) return $"its grant is for the {grant.Role.Name()} role";
        if (grant.Peer != holder) return $"its grant was issued to another peer ({grant.Peer})";
        if (!grant.HasValidSignature()) return "its grant's signature does not verify under the cluster key";
        var now = _time.GetUtcNow();
        if (now + ClockSkew < grant.NotBefore) return $"its grant is not valid before {grant.NotBefore:u}";
        if (now - ClockSkew >= grant.Expiry) return $"its grant expired at {grant.Expiry:u}";
        var revoked = _revocations.ReasonRevoked(grant) ?? Volatile.Read(ref _signed)?.List.ReasonRevoked(grant);
        return revoked is null ? null : $"its {revoked}";
    }

    /// <summary>
    /// <see cref="Check"/> for a grant in its text form (<see cref="RoleGrant.ToText"/>), as it arrives
    /// in RPC metadata. Null <paramref name="grant"/> when the text did not parse.
    /// </summary>
    public string? Check(string? text, PeerId holder, GrantRole role, out RoleGrant? grant)
    {
        grant = null;
        if (string.IsNullOrEmpty(text)) return "it presented no grant";
        if (!_parsed.TryGetValue(text, out grant))
        {
            try
            {
                grant = RoleGrant.FromText(text);
            }
            catch (FormatException e)
            {
                return $"its grant is malformed: {e.Message}";
            }
            if (_parsed.Count >= MaxCachedGrants) _parsed.Clear();
            _parsed[text] = grant;
        }
        return Check(grant, holder, role);
    }
}
