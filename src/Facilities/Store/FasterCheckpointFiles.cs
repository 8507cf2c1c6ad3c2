using System.Buffers.Binary;

namespace P2PInference.Facilities.Store;

/// <summary>
/// The key-value checkpoints in a store's <c>kv-checkpoints</c> directory, as FASTER lays them out:
/// <c>index-checkpoints/&lt;token&gt;/</c> and <c>cpr-checkpoints/&lt;token&gt;/</c>, each with an
/// <c>info.dat</c> (segment files <c>info.dat.0</c>…) of metadata written last.
/// </summary>
/// <remarks>
/// FASTER's own removal of older checkpoints (<c>RemoveOutdated</c>) is off, for the flaw
/// <see cref="FasterLogFiles"/> guards commit records against: its checkpoint manager ignores a failed
/// metadata write and deletes the previous checkpoint anyway. On a full disk a checkpoint was then
/// reported as taken, the log truncated up to it, and the next open found only an empty
/// <c>info.dat</c>: the store would not open, and what the truncated log held was lost. The store
/// checks the new checkpoint with <see cref="PruneOrDiscard"/> before anything relies on it.
/// </remarks>
internal static class FasterCheckpointFiles
{
    private static readonly string[] Kinds = ["index-checkpoints", "cpr-checkpoints"];

    /// <summary>
    /// Checks that checkpoint <paramref name="token"/>'s metadata was written whole, then deletes
    /// every other checkpoint. If it was not, deletes it instead, so the next open recovers the
    /// previous one. Call only after the checkpoint returned and while no other one runs.
    /// </summary>
    /// <exception cref="StoreException">The new checkpoint's metadata is missing or cut short: it is not taken.</exception>
    public static void PruneOrDiscard(string checkpointDir, Guid token)
    {
        var name = token.ToString();
        foreach (var kind in Kinds)
        {
            if (TokenMetadataProblem(Path.Combine(checkpointDir, kind, name)) is { } problem)
            {
                foreach (var each in Kinds) Delete(Path.Combine(checkpointDir, each, name));
                throw new StoreException($"The key-value checkpoint could not be written (is the disk full?): {problem}", checkpointDir);
            }
        }

        foreach (var kind in Kinds)
        {
            var root = Path.Combine(checkpointDir, kind);
            if (!Directory.Exists(root)) continue;
            foreach (var older in Directory.EnumerateDirectories(root))
            {
                // Kept until the next checkpoint prunes again if it cannot be deleted now.
                if (Path.GetFileName(older) != name) Delete(older);
            }
        }
    }

    /// <summary>
    /// At open: deletes the checkpoints whose metadata is missing or cut short, but only when a whole
    /// one remains to recover from. The process can die between FASTER writing a broken checkpoint and
    /// <see cref="PruneOrDiscard"/> (or the discard's delete can fail); the log was not truncated up to
    /// it, so the whole checkpoint and the log still hold everything. With no whole checkpoint nothing
    /// is deleted, and the open refuses as before.
    /// </summary>
    /// <exception cref="StoreException">The checkpoint files cannot be read or deleted.</exception>
    public static void DiscardBrokenBesideWhole(string checkpointDir)
    {
        try
        {
            var tokens = Kinds
                .Select(kind => Path.Combine(checkpointDir, kind))
                .Where(Directory.Exists)
                .SelectMany(Directory.EnumerateDirectories)
                .Select(Path.GetFileName)
                .Distinct(StringComparer.Ordinal)
                .ToList();
            var broken = tokens.Where(token => Kinds.Any(kind => TokenMetadataProblem(Path.Combine(checkpointDir, kind, token!)) is not null)).ToList();
            if (broken.Count == 0 || broken.Count == tokens.Count) return;
            foreach (var token in broken)
            {
                foreach (var kind in Kinds)
                {
                    var directory = Path.Combine(checkpointDir, kind, token!);
                    if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StoreException("The key-value checkpoints cannot be read or cleaned up: " + e.Message, checkpointDir, e);
        }
    }

    /// <summary>Null when the checkpoint part in <paramref name="directory"/> has its metadata, whole.</summary>
    private static string? TokenMetadataProblem(string directory)
    {
        // The device layer names the file info.dat with a segment number appended (info.dat.0).
        var files = Directory.Exists(directory) ? Directory.GetFiles(directory, "info.dat*") : [];
        if (files.Length == 0) return $"{Path.GetFileName(Path.GetDirectoryName(directory))}/{Path.GetFileName(directory)} has no info.dat";
        return files.Select(MetadataProblem).FirstOrDefault(p => p is not null);
    }

    /// <summary>
    /// Null when <paramref name="file"/> holds what its length prefix (int32, little-endian) announces;
    /// otherwise what is wrong with it.
    /// </summary>
    public static string? MetadataProblem(string file)
    {
        Span<byte> prefix = stackalloc byte[sizeof(int)];
        using var stream = File.OpenRead(file);
        var length = stream.Length;
        if (length < prefix.Length || stream.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false) < prefix.Length)
            return $"{Path.GetFileName(file)} holds {length} bytes";
        var announced = BinaryPrimitives.ReadInt32LittleEndian(prefix);
        if (announced <= 0 || announced > length - prefix.Length)
            return $"{Path.GetFileName(file)} announces {announced} bytes of metadata and holds {length - prefix.Length}";
        return null;
    }

    private static void Delete(string directory)
    {
        try
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // Left for the next checkpoint's pruning.
        }
        catch (UnauthorizedAccessException)
        {
            // Likewise.
        }
    }
}
