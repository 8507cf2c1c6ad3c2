using System.Runtime.InteropServices;
using FASTER.core;

namespace P2PInference.Facilities.Store;

/// <summary>
/// A FASTER device that reads and writes its file on the calling thread and calls back before it
/// returns. FASTER writes and reads its small metadata records (a log's commit record, a
/// checkpoint's <c>info.dat</c>) by starting the I/O and then blocking the calling thread, itself a
/// thread-pool thread, until the completion arrives; FASTER's own file device completes on another
/// pool thread. With the pool's other threads busy (one core, a test host), each such record then
/// waited for the pool to add a thread: 0.5 to 1 s per commit or checkpoint.
/// <see cref="SynchronousMetadataDevices"/> hands out this device for those records only.
/// </summary>
/// <remarks>
/// Same files as FASTER's device (the segment number after the name: <c>commit.7.0</c>), so stores
/// written before open unchanged. A write is flushed to the disk before it reports success, as
/// FASTER's write-through file does.
/// </remarks>
internal sealed class SynchronousFileDevice : StorageDeviceBase
{
    // Any non-zero code fails the I/O; FASTER's own device also reports uint.MaxValue when it has no better one.
    private const uint Failed = uint.MaxValue;

    public SynchronousFileDevice(string fileName)
        : base(fileName, sectorSize: 512, capacity: Devices.CAPACITY_UNSPECIFIED)
    {
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
    {
        uint error = 0;
        try
        {
            var path = GetSegmentFilename(FileName, segmentId);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using var file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
            file.Position = (long)destinationAddress;
            // Metadata records are a few hundred bytes: a managed copy keeps this code free of pointers.
            var record = new byte[checked((int)numBytesToWrite)];
            Marshal.Copy(sourceAddress, record, 0, record.Length);
            file.Write(record);
            file.Flush(flushToDisk: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = Failed;
            numBytesToWrite = 0;
        }

        callback(error, numBytesToWrite, context);
    }

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context)
    {
        uint error = 0;
        var read = 0;
        // Zeroed: a record shorter than the sector-aligned read (a write cut short) reads as zeros
        // past its end, never as whatever FASTER's pooled buffer held before.
        var record = new byte[checked((int)readLength)];
        try
        {
            using var file = new FileStream(GetSegmentFilename(FileName, segmentId), FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
            file.Position = (long)sourceAddress;
            read = file.ReadAtLeast(record, record.Length, throwOnEndOfStream: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = Failed;
        }

        Marshal.Copy(record, 0, destinationAddress, record.Length);
        callback(error, (uint)read, context);
    }

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result)
    {
        try
        {
            File.Delete(GetSegmentFilename(FileName, segment));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // FASTER's device ignores a failed removal too; the file is deleted again with its directory.
        }

        callback(result);
    }

    // The base waits on an epoch that this device, never initialized with one, does not have.
    public override void RemoveSegment(int segment) => RemoveSegmentAsync(segment, static _ => { }, null!);

    public override long GetFileSize(int segment)
    {
        var file = new FileInfo(GetSegmentFilename(FileName, segment));
        return file.Exists ? file.Length : 0;
    }

    public override void Dispose()
    {
    }
}
