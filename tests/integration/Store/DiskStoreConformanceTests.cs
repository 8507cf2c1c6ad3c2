using P2PInference.Facilities.Store;
using P2PInference.TestKit.Conformance;

namespace P2PInference.Tests.Integration.Store;

[TestFixture]
public sealed class DiskStoreConformanceTests : KeyValueStoreConformanceTests
{
    private readonly List<string> _directories = [];

    protected override async Task<IKeyValueStore> CreateStoreAsync()
    {
        var directory = Path.Combine(Path.GetTempPath(), "p2pinference-store-" + Guid.NewGuid().ToString("N"));
        _directories.Add(directory);
        return await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { DataDirectory = directory, ExpectedKeyCount = 1L << 16, CheckpointInterval = TimeSpan.Zero });
    }

    [TearDown]
    public void DeleteDirectories()
    {
        foreach (var directory in _directories)
        {
            Directory.Delete(directory, recursive: true);
        }

        _directories.Clear();
    }
}
