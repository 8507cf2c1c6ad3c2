using P2PInference.Facilities.Store;
using P2PInference.TestKit.Conformance;
using P2PInference.TestKit.Store;

namespace P2PInference.Tests.Unit.Store;

[TestFixture]
public sealed class RamStoreConformanceTests : KeyValueStoreConformanceTests
{
    protected override async Task<IKeyValueStore> CreateStoreAsync() => await RamStore.CreateAsync();
}
