using System.Collections.Frozen;
using System.Globalization;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// Grants the operator withdrew before they expire: by serial (one grant) or by peer (every grant of
/// that PeerId). The operator distributes it as a text file, one entry a line — a grant's serial as
/// 16 hex digits or a PeerId — with <c>#</c> comments and blank lines ignored; or signed with the
/// cluster key (<see cref="SignedRevocationList"/>), which peers then hand on to each other.
/// </summary>
public sealed class RevocationList
{
    /// <summary>A revocation list file is at most this large; a bigger one is refused rather than read.</summary>
    public const int MaxFileBytes = 4 * 1024 * 1024;

    public static readonly RevocationList Empty = new(FrozenSet<ulong>.Empty, FrozenSet<PeerId>.Empty);

    private readonly FrozenSet<ulong> _serials;
    private readonly FrozenSet<PeerId> _peers;

    public RevocationList(IEnumerable<ulong> serials, IEnumerable<PeerId> peers)
    {
        ArgumentNullException.ThrowIfNull(serials);
        ArgumentNullException.ThrowIfNull(peers);
        _serials = serials.ToFrozenSet();
        _peers = peers.ToFrozenSet();
    }

    public int Count => _serials.Count + _peers.Count;

    internal IReadOnlyCollection<ulong> Serials => _serials;

    internal IReadOnlyCollection<PeerId> Peers => _peers;

    /// <summary>How many of these revocations <paramref name="next"/> no longer holds: what taking it would lift.</summary>
    public int CountLiftedBy(RevocationList next)
    {
        ArgumentNullException.ThrowIfNull(next);
        return _serials.Count(s => !next._serials.Contains(s)) + _peers.Count(p => !next._peers.Contains(p));
    }

    /// <summary>Every revocation of this list and of <paramref name="other"/>.</summary>
    public RevocationList Union(RevocationList other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return new RevocationList(_serials.Concat(other._serials), _peers.Concat(other._peers));
    }

    /// <summary>Why <paramref name="grant"/> is revoked, or null when it is not.</summary>
    public string? ReasonRevoked(RoleGrant grant)
    {
        ArgumentNullException.ThrowIfNull(grant);
        if (_serials.Contains(grant.Serial)) return $"grant serial {grant.SerialText} is revoked";
        if (_peers.Contains(grant.Peer)) return $"every grant of peer {grant.Peer} is revoked";
        return null;
    }

    /// <summary>
    /// The list in a file's text: the plain form, or a list the cluster key signed (<see cref="SignedRevocationList"/>),
    /// whose entries are taken as they are. Whoever can check its signature does: a file is the operator's own input,
    /// as the plain form is.
    /// </summary>
    /// <exception cref="FormatException">A line is neither a serial nor a PeerId (the message names the line), or a signed list does not decode.</exception>
    public static RevocationList Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (SignedRevocationList.IsSignedText(text)) return SignedRevocationList.FromText(text).List;
        var serials = new HashSet<ulong>();
        var peers = new HashSet<PeerId>();
        var number = 0;
        foreach (var raw in text.Split('\n'))
        {
            number++;
            var hash = raw.IndexOf('#', StringComparison.Ordinal);
            var line = (hash >= 0 ? raw[..hash] : raw).Trim();
            if (line.Length == 0) continue;
            if (line.Length == 16 && ulong.TryParse(line, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var serial))
                serials.Add(serial);
            else if (PeerId.TryParse(line, out var peer))
                peers.Add(peer!);
            else
                throw new FormatException($"line {number}: '{line}' is neither a grant serial (16 hex digits) nor a PeerId");
        }
        return new RevocationList(serials, peers);
    }

    /// <summary>The list in the operator's file at <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="InvalidDataException">The file is larger than <see cref="MaxFileBytes"/>.</exception>
    /// <exception cref="FormatException">A line is neither a serial nor a PeerId.</exception>
    public static RevocationList Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return Parse(OperatorFile.ReadAllText(path, MaxFileBytes, "revocation list"));
    }

    /// <summary>The list as the file holds it.</summary>
    public string ToText() =>
        string.Concat(_serials.Order().Select(s => s.ToString("x16", CultureInfo.InvariantCulture) + "\n")
            .Concat(_peers.Select(p => p.ToString()).Order(StringComparer.Ordinal).Select(p => p + "\n")));
}
