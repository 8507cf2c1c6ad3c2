using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Takes each read of the operator's revocation list file into <paramref name="verifier"/>. A read
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
}
