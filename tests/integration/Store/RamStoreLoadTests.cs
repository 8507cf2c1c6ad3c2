using P2PInference.TestKit.Store;

namespace P2PInference.Tests.Integration.Store;

/// <summary>
/// The TestKit's RAM store under the load of a busy worker: many real threads writing at once. Here rather
/// than in the unit tier, since a hundred thousand writes through the real store take seconds.
/// </summary>
[TestFixture]
public sealed class RamStoreLoadTests
{
    [Test, CancelAfter(60_000)]
    public async Task HundredThousandKeys_PutThenReadAllBack(CancellationToken ct)
    {
        await using var store = await RamStore.CreateAsync(cancellationToken: ct);
        const int keys = 100_000;
        const int parallel = 256;
        await Task.WhenAll(Enumerable.Range(0, parallel).Select(p => Task.Run(
            async () =>
            {
                for (var i = p; i < keys; i += parallel)
                {
                    await store.PutAsync("key-" + i, BitConverter.GetBytes(i), ct);
                }
            },
            ct)));

        for (var i = 0; i < keys; i++)
        {
            var value = await store.GetAsync("key-" + i, ct);
            if (value is null || BitConverter.ToInt32(value) != i)
            {
                Assert.Fail($"key-{i} read back as {(value is null ? "absent" : BitConverter.ToInt32(value).ToString())}");
            }
        }
    }
}
