using System.Runtime.InteropServices;
using FASTER.core;
using P2PInference.Facilities.Store;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Store;

/// <summary>
/// The devices FASTER's commit and checkpoint records go through: they complete on the calling
/// thread (so a commit never waits for a second thread-pool thread), write exactly the files FASTER's
/// own device writes (so existing stores open unchanged), and report failures as FASTER expects.
/// </summary>
[TestFixture]
public sealed class SynchronousMetadataDevicesTests
{
    private string _directory = null!;

    [SetUp]
    public void SetUp() => _directory = Directory.CreateTempSubdirectory("p2pinference-metadata-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_directory, recursive: true);

    [Test, CancelAfter(10_000)]
    public void CommitRecords_OfFastersOwnDevice_AndOfOurs_ReadTheSameBothWays()
    {
        var random = TestSeed.CreateRandom();
        var older = new byte[300];
        var newer = new byte[700];
        random.NextBytes(older);
        random.NextBytes(newer);

        using var faster = new DeviceLogCommitCheckpointManager(new LocalStorageNamedDeviceFactory(), new DefaultCheckpointNamingScheme(_directory), removeOutdated: false);
        using var ours = SynchronousMetadataDevices.Manager(_directory);
        faster.Commit(0, 4096, older, 1, forceWriteMetadata: false);
        ours.Commit(0, 8192, newer, 2, forceWriteMetadata: false);

        // FASTER hands back the record with its sector padding; what it parses ignores the zeros.
        Assert.Multiple(() =>
        {
            Assert.That(ours.GetCommitMetadata(1)[..older.Length], Is.EqualTo(older), "a record FASTER wrote, read by ours");
            Assert.That(ours.GetCommitMetadata(1), Is.EqualTo(faster.GetCommitMetadata(1)));
            Assert.That(faster.GetCommitMetadata(2)[..newer.Length], Is.EqualTo(newer), "a record ours wrote, read by FASTER");
            Assert.That(faster.GetCommitMetadata(2), Is.EqualTo(ours.GetCommitMetadata(2)));
            Assert.That(ours.ListCommits(), Is.EqualTo(new long[] { 2, 1 }));
            Assert.That(File.ReadAllBytes(Path.Combine(_directory, "log-commits", "commit.2.0")), Has.Length.EqualTo(1024), "padded to whole sectors, as FASTER's device pads");
        });
    }

    [Test]
    public void AWrite_AndARead_CompleteBeforeTheyReturn_OnTheCallingThread()
    {
        var device = new SynchronousFileDevice(Path.Combine(_directory, "sub", "info.dat"));
        var buffer = Marshal.AllocHGlobal(512);
        try
        {
            var record = Enumerable.Range(0, 512).Select(i => (byte)i).ToArray();
            Marshal.Copy(record, 0, buffer, record.Length);
            var completions = new List<(uint Error, uint Bytes, int Thread)>();
            DeviceIOCompletionCallback done = (error, bytes, _) => completions.Add((error, bytes, Environment.CurrentManagedThreadId));

            device.WriteAsync(buffer, 0, 0, 512, done, null!);
            Assert.That(completions, Is.EqualTo(new[] { (0u, 512u, Environment.CurrentManagedThreadId) }), "the write called back before it returned, on this thread");

            Marshal.Copy(new byte[512], 0, buffer, 512);
            device.ReadAsync(0, 0, buffer, 512, done, null!);
            var read = new byte[512];
            Marshal.Copy(buffer, read, 0, 512);
            Assert.Multiple(() =>
            {
                Assert.That(completions, Has.Count.EqualTo(2));
                Assert.That(completions[1], Is.EqualTo((0u, 512u, Environment.CurrentManagedThreadId)));
                Assert.That(read, Is.EqualTo(record));
                Assert.That(File.Exists(Path.Combine(_directory, "sub", "info.dat.0")), "FASTER's file name: the segment after the name");
            });
        }
        finally
        {
            Marshal.FreeHGlobal(buffer);
        }
    }

    [Test]
    public void AFailedWrite_IsAnError_AndARecordCutShort_ReadsAsZerosPastItsEnd()
    {
        // A file where the record's directory should be: the write cannot happen.
        File.WriteAllText(Path.Combine(_directory, "blocked"), "");
        var unwritable = new SynchronousFileDevice(Path.Combine(_directory, "blocked", "info.dat"));
        var shortRecord = Path.Combine(_directory, "short");
        File.WriteAllBytes(shortRecord + ".0", [1, 2, 3]);
        var cutShort = new SynchronousFileDevice(shortRecord);
        var missing = new SynchronousFileDevice(Path.Combine(_directory, "missing"));
        var buffer = Marshal.AllocHGlobal(512);
        try
        {
            var completions = new List<(uint Error, uint Bytes)>();
            DeviceIOCompletionCallback done = (error, bytes, _) => completions.Add((error, bytes));
            unwritable.WriteAsync(buffer, 0, 0, 512, done, null!);

            Marshal.Copy(Enumerable.Repeat((byte)0xFF, 512).ToArray(), 0, buffer, 512);
            cutShort.ReadAsync(0, 0, buffer, 512, done, null!);
            var read = new byte[512];
            Marshal.Copy(buffer, read, 0, 512);

            Marshal.Copy(Enumerable.Repeat((byte)0xFF, 512).ToArray(), 0, buffer, 512);
            missing.ReadAsync(0, 0, buffer, 512, done, null!);
            var none = new byte[512];
            Marshal.Copy(buffer, none, 0, 512);

            Assert.Multiple(() =>
            {
                Assert.That(completions[0].Error, Is.Not.Zero, "the failed write");
                Assert.That(completions[0].Bytes, Is.Zero);
                Assert.That(completions[1], Is.EqualTo((0u, 3u)), "the short record");
                Assert.That(read[..3], Is.EqualTo(new byte[] { 1, 2, 3 }));
                Assert.That(read[3..], Is.All.Zero);
                Assert.That(completions[2].Error, Is.Not.Zero, "the missing record");
                Assert.That(none, Is.All.Zero);
            });
        }
        finally
        {
            Marshal.FreeHGlobal(buffer);
        }
    }
}
