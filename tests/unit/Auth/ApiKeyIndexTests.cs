using P2PInference.Facilities.Store;
using P2PInference.TestKit.Store;
using P2PInference.Workers.Auth;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Auth;

/// <summary>A user's keys come from their own list record: creating and listing never scan the store, whatever else it holds.</summary>
[TestFixture]
public sealed class ApiKeyIndexTests
{
    [Test]
    public async Task CreatingAndListingKeys_NeverScanTheStore_AndEachUserSeesOnlyTheirs()
    {
        // Scans are counted above the store, so the engine under it does not matter: the in-memory one starts at once.
        await using var inner = new SimulatedStore();
        var store = new ScanCountingStore(inner);
        var keys = new ApiKeyService(store, new FakeTimeProvider(), maxKeysPerUser: 3);
        await keys.CreateAsync("usr_other", "theirs", CancellationToken.None);
        await keys.CreateAsync("usr_a", "one", CancellationToken.None);
        await keys.CreateAsync("usr_a", "two", CancellationToken.None);
        var scansSoFar = store.Scans;

        await keys.CreateAsync("usr_a", "three", CancellationToken.None);
        var listed = await keys.ListAsync("usr_a", CancellationToken.None);

        Assert.That(listed.Select(k => k.Name), Is.EquivalentTo(new[] { "one", "two", "three" }));
        Assert.That(store.Scans, Is.EqualTo(scansSoFar).And.LessThanOrEqualTo(2), "one scan per user at most, to build their list the first time");
        await Assert.ThatAsync(() => keys.CreateAsync("usr_a", "four", CancellationToken.None),
            Throws.TypeOf<AuthException>().With.Property(nameof(AuthException.Code)).EqualTo(AuthErrorCode.ResourceExhausted));
        Assert.That((await keys.ListAsync("usr_other", CancellationToken.None)).Select(k => k.Name), Is.EqualTo(new[] { "theirs" }));
    }

    [Test]
    public async Task KeysIndexedTheOldWay_AreListedAndCounted_AfterOneMigratingScan()
    {
        await using var ram = new SimulatedStore();
        var store = new ScanCountingStore(ram);
        var keys = new ApiKeyService(store, new FakeTimeProvider(), maxKeysPerUser: 2);
        var (old, _) = await keys.CreateAsync("usr_a", "old", CancellationToken.None);
        // Make it look like a store written before the list: only the per-key index entry.
        await ram.DeleteAsync("user-key-lists/usr_a", CancellationToken.None);
        await ram.PutAsync("user-api-keys/usr_a/" + old.KeyId, System.Text.Encoding.ASCII.GetBytes(old.KeyId), CancellationToken.None);
        var before = store.Scans;

        Assert.That((await keys.ListAsync("usr_a", CancellationToken.None)).Select(k => k.KeyId), Is.EqualTo(new[] { old.KeyId }));
        await keys.CreateAsync("usr_a", "new", CancellationToken.None);
        await keys.ListAsync("usr_a", CancellationToken.None);

        Assert.That(store.Scans - before, Is.EqualTo(1));
        await Assert.ThatAsync(() => keys.CreateAsync("usr_a", "third", CancellationToken.None), Throws.TypeOf<AuthException>());
    }
}
