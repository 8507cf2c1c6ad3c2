using FASTER.core;

namespace P2PInference.Facilities.Store;

/// <summary>Opens (and recovers) a FasterLog in a directory, the one way the store and the durable log both do it.</summary>
internal static class FasterLogFiles
{
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
                LogCommitDir = directory,
                PageSizeBits = pageBits,
                MemorySizeBits = pageBits + 2,
                SegmentSizeBits = Math.Max(30, pageBits + 1),
                LogChecksum = LogChecksumType.PerEntry,
                RemoveOutdatedCommits = true,
                TryRecoverLatest = true,
            });
        }
        catch (Exception e) when (e is FasterException or IOException or UnauthorizedAccessException or InvalidDataException
            or ArgumentException or FormatException or OverflowException or IndexOutOfRangeException)
        {
            throw new StoreException($"The {description} is corrupted or unreadable: " + e.Message, directory, e);
        }
    }
}
