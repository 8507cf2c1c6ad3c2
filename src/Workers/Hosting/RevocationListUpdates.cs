using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Takes each read of the operator's revocation list file into <paramref name="verifier"/>. A read
/// that only adds revocations is taken at once; one that lifts any is taken only when the next read,
/// a period later, finds the same text. An operator who rewrites the file in place (truncate, then
/// write) can be read between the two, and that read, empty or cut short, would otherwise lift the
/// revocations it lacks for a whole period; a truncated file can only lift, never add.
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
            logger.LogInformation("revocation list {Path} lifts {Lifted} of {Count} revocations: taken when the next read finds the same", path, lifted, verifier.Revocations.Count);
            return false;
        }

        _lifting = null;
        verifier.Revocations = next;
        logger.LogInformation("revocation list {Path}: {Count} entries", path, next.Count);
        return true;
    }
}
