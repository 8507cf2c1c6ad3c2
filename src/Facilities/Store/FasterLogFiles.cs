using FASTER.core;

namespace P2PInference.Facilities.Store;

/// <summary>Opens (and recovers) a FasterLog in a directory, the one way the store and the durable log both do it.</summary>
internal static class FasterLogFiles
{
    /// <summary>
    /// FASTER's own removal of older commit records is off (the manager from
    /// <see cref="SynchronousMetadataDevices.Manager"/> never deletes): it deletes them even when writing
    /// the new one fails (a full disk), leaving no readable commit and so an empty log on the next open.
    /// The caller prunes with <see cref="PruneCommits"/> after each successful commit.
    /// </summary>
    /// <param name="onDevice">Receives the device as soon as it exists, so the caller can dispose it if opening fails.</param>
    /// <exception cref="StoreException">The log is corrupted or unreadable.</exception>
    public static FasterLog Open(string directory, int maxEntryBytes, string description, Action<IDevice> onDevice)
    {
        var device = Devices.CreateLogDevice(Path.Combine(directory, "log"), preallocateFile: false, deleteOnClose: false, recoverDevice: true);
        onDevice(device);
        var pageBits = FasterKeyValueStore.LogPageBits(maxEntryBytes);
        try
        {
            return new FasterLog(new FasterLogSettings
            {
                LogDevice = device,
                LogCommitManager = SynchronousMetadataDevices.Manager(directory),
                PageSizeBits = pageBits,
                MemorySizeBits = pageBits + 2,
                SegmentSizeBits = Math.Max(30, pageBits + 1),
                LogChecksum = LogChecksumType.PerEntry,
                TryRecoverLatest = true,
            });
        }
        catch (Exception e) when (e is FasterException or IOException or UnauthorizedAccessException or InvalidDataException
            or ArgumentException or FormatException or OverflowException or IndexOutOfRangeException)
        {
            throw new StoreException($"The {description} is corrupted or unreadable: " + e.Message, directory, e);
        }
    }

    /// <summary>
    /// Checks that the newest commit record of <paramref name="directory"/>'s log was written, then
    /// deletes the older ones. Call only after a commit returned and while no other commit runs.
    /// </summary>
    /// <exception cref="StoreException">The newest commit record is empty: the commit is not durable.</exception>
    public static void PruneCommits(string directory)
    {
        var commits = Path.Combine(directory, "log-commits");
        if (!Directory.Exists(commits)) return;
        var records = new List<(long Number, FileInfo File)>();
        foreach (var file in new DirectoryInfo(commits).EnumerateFiles("commit.*"))
        {
            var parts = file.Name.Split('.');
            if (parts.Length >= 2 && long.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n))
                records.Add((n, file));
        }
        if (records.Count == 0) return;
        var newest = records.Max(r => r.Number);
        // FASTER reports a commit as done even when its commit record could not be written (seen on a
        // full tmpfs: an empty file), which would lose every write it acknowledged at the next open.
        if (records.First(r => r.Number == newest).File.Length == 0)
            throw new StoreException($"The log's commit record {newest} could not be written (is the disk full?)", commits);
        foreach (var (number, file) in records)
        {
            if (number >= newest) continue;
            try
            {
                file.Delete();
            }
            catch (IOException)
            {
                // Kept until the next commit prunes again.
            }
        }
    }
}
