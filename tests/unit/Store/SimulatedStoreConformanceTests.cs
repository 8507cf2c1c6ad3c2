using P2PInference.Facilities.Store;
using P2PInference.TestKit.Conformance;
using P2PInference.TestKit.Simulation;
using P2PInference.TestKit.Store;

namespace P2PInference.Tests.Unit.Store;

[TestFixture]
public sealed class SimulatedStoreConformanceTests : KeyValueStoreConformanceTests
{
    protected override Task<IKeyValueStore> CreateStoreAsync() => Task.FromResult<IKeyValueStore>(new SimulatedStore());
}

/// <summary>What the simulated store adds to the contract: it runs on the executor, fails like a full disk, keeps acknowledged writes across a crash.</summary>
[TestFixture]
public sealed class SimulatedStoreTests
{
    [Test]
    public void FullDisk_FailsTheWrite_ChangesNothing_AndWorksAgainWhenSpaceFrees() => SimulationTest.Run(async sim =>
    {
        await using var store = new SimulatedStore();
        await store.PutAsync("user/1", "alice"u8.ToArray(), CancellationToken.None);

        store.FailWrites = true;
        await Assert.ThatAsync(async () => await store.PutAsync("user/1", "mallory"u8.ToArray(), CancellationToken.None), Throws.TypeOf<StoreException>());
        await Assert.ThatAsync(async () => await store.DeleteAsync("user/1", CancellationToken.None), Throws.TypeOf<StoreException>());
        Assert.That(await store.GetAsync("user/1", CancellationToken.None), Is.EqualTo("alice"u8.ToArray()), "reads work and nothing changed");

        store.FailWrites = false;
        await store.PutAsync("user/1", "bob"u8.ToArray(), CancellationToken.None);
        Assert.That(await store.GetAsync("user/1", CancellationToken.None), Is.EqualTo("bob"u8.ToArray()));
    });

    [Test]
    public void Crash_KeepsEveryAcknowledgedWrite() => SimulationTest.Run(async sim =>
    {
        await using var store = new SimulatedStore();
        await store.PutAsync("a", new byte[] { 1 }, CancellationToken.None);
        await store.SubStore("keys").PutAsync("b", new byte[] { 2 }, CancellationToken.None);

        await store.CrashAndRestartAsync();

        Assert.That(store.Restarts, Is.EqualTo(1));
        Assert.That(await store.GetAsync("a", CancellationToken.None), Is.EqualTo(new byte[] { 1 }));
        Assert.That(await store.GetAsync("keys/b", CancellationToken.None), Is.EqualTo(new byte[] { 2 }));
    });

    [Test]
    public void ConcurrentCompareAndSwaps_OneWins_InAnOrderTheSeedDecides() => SimulationTest.Run(async sim =>
    {
        await using var store = new SimulatedStore();
        var attempts = Enumerable.Range(0, 5).Select(async i =>
            (i, won: await store.CompareAndSwapAsync("leader", default(ReadOnlyMemory<byte>?), new byte[] { (byte)i }, CancellationToken.None))).ToArray();
        var results = await Task.WhenAll(attempts);

        Assert.That(results.Count(r => r.won), Is.EqualTo(1));
        Assert.That(await store.GetAsync("leader", CancellationToken.None), Is.EqualTo(new[] { (byte)results.Single(r => r.won).i }));
    });

    [Test]
    public void Disposed_RefusesUse() => SimulationTest.Run(async sim =>
    {
        var store = new SimulatedStore();
        await store.DisposeAsync();
        await Assert.ThatAsync(async () => await store.GetAsync("a", CancellationToken.None), Throws.TypeOf<ObjectDisposedException>());
    });
}
