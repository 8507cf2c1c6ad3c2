using P2PInference.Facilities.Store;
using P2PInference.TestKit.Conformance;

namespace P2PInference.Tests.Unit.Store;

/// <summary>The store with no data directory (nothing outlives the process) behaves the same.</summary>
[TestFixture]
public sealed class InMemoryFasterStoreConformanceTests : KeyValueStoreConformanceTests
{
    protected override async Task<IKeyValueStore> CreateStoreAsync() =>
        await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { MemorySizeBytes = 16L << 20, ExpectedKeyCount = 1L << 16 });
}
