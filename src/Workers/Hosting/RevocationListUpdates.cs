using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Takes each read of the operator's revocation list file into <paramref name="verifier"/>. A signed list
/// (<see cref="SignedRevocationList"/>) is taken whole when it is newer than the one held. For a plain list, a read
/// that only adds revocations is taken at once; one that lifts any is taken only when the next read,
/// a period later, finds the same text. An operator who rewrites the file in place (truncate, then
/// write) can be read between the two, and that read, empty or cut short, would otherwise lift the
/// revocations it lacks for a whole period; a truncated file can only lift, never add. What a
/// lifting read adds is taken at once, though: an operator who revokes a compromised worker while
/// removing a stale entry must not wait the extra period for the revocation.
/// </summary>
internal sealed class RevocationListUpdates(GrantVerifier verifier, string path, ILogger logger)
{
    // The text of the last read that would lift revocations, waiting for a second read to agree.
    private string? _lifting;

    /// <summary>False when <paramref name="text"/> would lift revocations and is not yet confirmed: read the file again next period.</summary>
    /// <exception cref="FormatException">A line is neither a serial nor a PeerId.</exception>
    public bool Take(string text)
    {
        if (SignedRevocationList.IsSignedText(text)) return TakeSigned(SignedRevocationList.FromText(text));
        var next = RevocationList.Parse(text);
        var lifted = verifier.Revocations.CountLiftedBy(next);
        if (lifted > 0 && text != _lifting)
        {
            _lifting = text;
            var current = verifier.Revocations;
            var added = next.CountLiftedBy(current);
            if (added > 0)
            {
                verifier.Revocations = current.Union(next);
            }

            logger.LogInformation("revocation list {Path} lifts {Lifted} of {Count} revocations: taken when the next read finds the same; its {Added} new ones are taken now",
                path, lifted, current.Count, added);
            return false;
        }

        _lifting = null;
        verifier.Revocations = next;
        logger.LogInformation("revocation list {Path}: {Count} entries", path, next.Count);
        return true;
    }

    /// <summary>
    /// A list the cluster key signed: held and handed on to peers (<see cref="RevocationExchange"/>) unless a newer one is
    /// held already. It cannot be read cut short (a truncated one does not verify), so it is taken at once, lifts
    /// included, and replaces whatever plain list the file held before.
    /// </summary>
    /// <exception cref="FormatException">It does not verify under the cluster key.</exception>
    private bool TakeSigned(SignedRevocationList list)
    {
        switch (verifier.Adopt(list, out var reason))
        {
            case RevocationListAdoption.Refused:
                throw new FormatException($"the signed revocation list is refused: {reason}");
            case RevocationListAdoption.NotNewer:
                logger.LogInformation("revocation list {Path} ({List}) is not taken: {Reason}", path, list, reason);
                break;
            default:
                logger.LogInformation("revocation list {Path}: {List}", path, list);
                break;
        }
        _lifting = null;
        verifier.Revocations = RevocationList.Empty;
        return true;
    }
}
