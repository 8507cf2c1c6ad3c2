using FASTER.core;

namespace P2PInference.Facilities.Store;

/// <summary>
/// FASTER's file devices for its checkpoint and commit managers, except for the small metadata
/// records those managers write and read while blocking their thread (<c>commit.N</c> of a log,
/// <c>info.dat</c> of a checkpoint): those get a <see cref="SynchronousFileDevice"/>, so a commit or a
/// checkpoint never waits for a second thread-pool thread. The bulk files of a checkpoint (the hash
/// table, the snapshot), which FASTER awaits rather than blocks on, keep FASTER's device.
/// </summary>
internal sealed class SynchronousMetadataDevices : INamedDeviceFactory
{
    private readonly LocalStorageNamedDeviceFactory _files = new();
    private string _baseName = "";

    /// <summary>A manager for <paramref name="directory"/>'s commit records or checkpoints, with FASTER's file layout. It never deletes on its own; the store prunes once a newer record is known good.</summary>
    public static DeviceLogCommitCheckpointManager Manager(string directory) =>
        new(new SynchronousMetadataDevices(), new DefaultCheckpointNamingScheme(directory), removeOutdated: false);

    public void Initialize(string baseName)
    {
        _baseName = baseName;
        _files.Initialize(baseName);
    }

    public IDevice Get(FileDescriptor fileInfo) =>
        IsMetadata(fileInfo.fileName)
            ? new SynchronousFileDevice(Path.Combine(_baseName, fileInfo.directoryName, fileInfo.fileName))
            : _files.Get(fileInfo);

    public void Delete(FileDescriptor fileInfo) => _files.Delete(fileInfo);

    public IEnumerable<FileDescriptor> ListContents(string path) => _files.ListContents(path);

    private static bool IsMetadata(string? fileName) =>
        fileName is not null && (fileName == "info.dat" || fileName.StartsWith("commit.", StringComparison.Ordinal));
}
