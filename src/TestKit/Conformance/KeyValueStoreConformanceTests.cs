using System.Text;
using NUnit.Framework;
using P2PInference.Facilities.Store;

namespace P2PInference.TestKit.Conformance;

/// <summary>
/// The behaviour every <see cref="IKeyValueStore"/> must have. Derive, implement
/// <see cref="CreateStoreAsync"/> (a new, empty store per test) and the suite runs against it; a
/// store that is <see cref="IAsyncDisposable"/> or <see cref="IDisposable"/> is disposed after each test.
/// </summary>
[TestFixture]
public abstract class KeyValueStoreConformanceTests
{
    private IKeyValueStore? _store;

    /// <summary>The store under test (fresh for each test).</summary>
    protected IKeyValueStore Store => _store ?? throw new InvalidOperationException("The store is created in SetUp.");

    /// <summary>A new, empty store.</summary>
    protected abstract Task<IKeyValueStore> CreateStoreAsync();

    [SetUp]
    public async Task CreateStoreForTestAsync() => _store = await CreateStoreAsync();

    [TearDown]
    public async Task DisposeStoreAfterTestAsync()
    {
        switch (_store)
        {
            case IAsyncDisposable asyncDisposable:
                await asyncDisposable.DisposeAsync();
                break;
            case IDisposable disposable:
                disposable.Dispose();
                break;
        }

        _store = null;
    }

    [Test, CancelAfter(10000)]
    public async Task Get_ReturnsNull_WhenKeyIsAbsent(CancellationToken ct)
    {
        Assert.That(await Store.GetAsync("missing", ct), Is.Null);
    }

    [Test, CancelAfter(10000)]
    public async Task Put_ThenGet_ReturnsTheValue(CancellationToken ct)
    {
        await Store.PutAsync("k", Bytes("hello"), ct);
        Assert.That(await Store.GetAsync("k", ct), Is.EqualTo(Bytes("hello")));
    }

    [Test, CancelAfter(10000)]
    public async Task Put_ReplacesTheValue_WhenKeyExists(CancellationToken ct)
    {
        await Store.PutAsync("k", Bytes("first, longer value"), ct);
        await Store.PutAsync("k", Bytes("second"), ct);
        Assert.That(await Store.GetAsync("k", ct), Is.EqualTo(Bytes("second")));
    }

    [Test, CancelAfter(10000)]
    public async Task Put_StoresAnEmptyValue_DistinctFromAbsent(CancellationToken ct)
    {
        await Store.PutAsync("empty", ReadOnlyMemory<byte>.Empty, ct);
        var value = await Store.GetAsync("empty", ct);
        Assert.That(value, Is.Not.Null.And.Empty);
    }

    [Test, CancelAfter(10000)]
    public async Task Put_StoresAOneMebibyteValue_ByteForByte(CancellationToken ct)
    {
        var large = new byte[1 << 20];
        new Random(1234).NextBytes(large);
        await Store.PutAsync("large", large, ct);
        BytesAssert.AreEqual(large, await Store.GetAsync("large", ct));
    }

    [Test, CancelAfter(10000)]
    public async Task Put_KeepsItsOwnCopy_WhenCallerChangesTheBufferAfterwards(CancellationToken ct)
    {
        var buffer = Bytes("original");
        await Store.PutAsync("k", buffer, ct);
        buffer[0] = (byte)'X';
        var read = await Store.GetAsync("k", ct);
        read![1] = (byte)'Y';
        Assert.That(await Store.GetAsync("k", ct), Is.EqualTo(Bytes("original")));
    }

    [Test, CancelAfter(10000)]
    public async Task Keys_AreExactStrings_IncludingUnicodeAndControlCharacters(CancellationToken ct)
    {
        string[] keys = ["ключ", "🔑/émoji", "e\u0301", "\u00e9", "a\0b", " ", "KEY", "key", "tab\tnew\nline"];
        for (var i = 0; i < keys.Length; i++)
        {
            await Store.PutAsync(keys[i], new[] { (byte)i }, ct);
        }

        for (var i = 0; i < keys.Length; i++)
        {
            Assert.That(await Store.GetAsync(keys[i], ct), Is.EqualTo(new[] { (byte)i }), $"key #{i}");
        }
    }

    [Test, CancelAfter(10000)]
    public async Task Values_AreArbitraryBinary(CancellationToken ct)
    {
        var all = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        await Store.PutAsync("binary", all, ct);
        Assert.That(await Store.GetAsync("binary", ct), Is.EqualTo(all));
    }

    [Test, CancelAfter(10000)]
    public async Task Delete_RemovesTheKey_AndReportsItExisted(CancellationToken ct)
    {
        await Store.PutAsync("k", Bytes("v"), ct);
        Assert.That(await Store.DeleteAsync("k", ct), Is.True);
        Assert.That(await Store.GetAsync("k", ct), Is.Null);
    }

    [Test, CancelAfter(10000)]
    public async Task Delete_ReturnsFalse_WhenKeyIsAbsent(CancellationToken ct)
    {
        Assert.That(await Store.DeleteAsync("never", ct), Is.False);
        await Store.PutAsync("k", Bytes("v"), ct);
        await Store.DeleteAsync("k", ct);
        Assert.That(await Store.DeleteAsync("k", ct), Is.False);
    }

    [Test, CancelAfter(10000)]
    public async Task Put_AfterDelete_StoresTheNewValue(CancellationToken ct)
    {
        await Store.PutAsync("k", Bytes("v1"), ct);
        await Store.DeleteAsync("k", ct);
        await Store.PutAsync("k", Bytes("v2"), ct);
        Assert.That(await Store.GetAsync("k", ct), Is.EqualTo(Bytes("v2")));
    }

    [Test, CancelAfter(10000)]
    public async Task CompareAndSwap_Inserts_WhenExpectedAbsentAndKeyIsAbsent(CancellationToken ct)
    {
        Assert.That(await Store.CompareAndSwapAsync("k", null, Bytes("v"), ct), Is.True);
        Assert.That(await Store.GetAsync("k", ct), Is.EqualTo(Bytes("v")));
    }

    [Test, CancelAfter(10000)]
    public async Task CompareAndSwap_Fails_WhenExpectedAbsentButKeyExists(CancellationToken ct)
    {
        await Store.PutAsync("k", Bytes("v"), ct);
        Assert.That(await Store.CompareAndSwapAsync("k", null, Bytes("other"), ct), Is.False);
        Assert.That(await Store.GetAsync("k", ct), Is.EqualTo(Bytes("v")));
    }

    [Test, CancelAfter(10000)]
    public async Task CompareAndSwap_Replaces_WhenCurrentValueMatches(CancellationToken ct)
    {
        await Store.PutAsync("k", Bytes("old"), ct);
        Assert.That(await Store.CompareAndSwapAsync("k", Bytes("old"), Bytes("new"), ct), Is.True);
        Assert.That(await Store.GetAsync("k", ct), Is.EqualTo(Bytes("new")));
    }

    [Test, CancelAfter(10000)]
    public async Task CompareAndSwap_FailsAndChangesNothing_WhenCurrentValueDiffers(CancellationToken ct)
    {
        await Store.PutAsync("k", Bytes("actual"), ct);
        Assert.That(await Store.CompareAndSwapAsync("k", Bytes("stale"), Bytes("new"), ct), Is.False);
        Assert.That(await Store.GetAsync("k", ct), Is.EqualTo(Bytes("actual")));
    }

    [Test, CancelAfter(10000)]
    public async Task CompareAndSwap_Fails_WhenAValueIsExpectedButKeyIsAbsent(CancellationToken ct)
    {
        Assert.That(await Store.CompareAndSwapAsync("k", Bytes("v"), Bytes("new"), ct), Is.False);
        Assert.That(await Store.CompareAndSwapAsync("k", ReadOnlyMemory<byte>.Empty, Bytes("new"), ct), Is.False, "an empty value is not absence");
        Assert.That(await Store.GetAsync("k", ct), Is.Null);
    }

    [Test, CancelAfter(10000)]
    public async Task CompareAndSwap_MatchesAnEmptyValue_NotAbsence(CancellationToken ct)
    {
        await Store.PutAsync("k", ReadOnlyMemory<byte>.Empty, ct);
        Assert.That(await Store.CompareAndSwapAsync("k", null, Bytes("x"), ct), Is.False);
        Assert.That(await Store.CompareAndSwapAsync("k", ReadOnlyMemory<byte>.Empty, Bytes("x"), ct), Is.True);
    }

    [Test, CancelAfter(10000)]
    public async Task CompareAndSwap_Deletes_WhenReplacementIsNull(CancellationToken ct)
    {
        await Store.PutAsync("k", Bytes("v"), ct);
        Assert.That(await Store.CompareAndSwapAsync("k", Bytes("v"), null, ct), Is.True);
        Assert.That(await Store.GetAsync("k", ct), Is.Null);
    }

    [Test, CancelAfter(10000)]
    public async Task CompareAndSwap_ConcurrentSameExpectation_ExactlyOneWins(CancellationToken ct)
    {
        await Store.PutAsync("leader", Bytes("none"), ct);
        const int contenders = 32;
        var results = await Task.WhenAll(Enumerable.Range(0, contenders).Select(i => Task.Run(
            async () => await Store.CompareAndSwapAsync("leader", Bytes("none"), Bytes("node-" + i), ct), ct)));
        Assert.That(results.Count(r => r), Is.EqualTo(1));
        var winner = Array.IndexOf(results, true);
        Assert.That(await Store.GetAsync("leader", ct), Is.EqualTo(Bytes("node-" + winner)));
    }

    [Test, CancelAfter(20000)]
    public async Task CompareAndSwap_ConcurrentIncrements_CountExactlyTheSuccesses(CancellationToken ct)
    {
        const int workers = 16;
        const int incrementsEach = 25;
        var successes = 0;
        await Task.WhenAll(Enumerable.Range(0, workers).Select(_ => Task.Run(
            async () =>
            {
                for (var done = 0; done < incrementsEach;)
                {
                    var current = await Store.GetAsync("counter", ct);
                    var next = (current is null ? 0 : BitConverter.ToInt32(current)) + 1;
                    // Spelled out: a null byte[] (and even `c is null ? null : c`) converts to an empty
                    // ReadOnlyMemory, not to "absent".
                    var expected = current is null ? default(ReadOnlyMemory<byte>?) : current;
                    if (await Store.CompareAndSwapAsync("counter", expected, BitConverter.GetBytes(next), ct))
                    {
                        Interlocked.Increment(ref successes);
                        done++;
                    }
                }
            },
            ct)));
        Assert.That(successes, Is.EqualTo(workers * incrementsEach));
        Assert.That(BitConverter.ToInt32(await Store.GetAsync("counter", ct)), Is.EqualTo(workers * incrementsEach));
    }

    [Test, CancelAfter(10000)]
    public async Task Scan_ReturnsEveryKeyWithThePrefix_InOrdinalOrder(CancellationToken ct)
    {
        foreach (var key in new[] { "user/b", "user/a", "user/C", "users", "usex/z", "other", "user/a/deep" })
        {
            await Store.PutAsync(key, Bytes("v:" + key), ct);
        }

        var entries = await ToListAsync(Store.ScanAsync("user/", ct));
        Assert.That(entries.Select(e => e.Key), Is.EqualTo(new[] { "user/C", "user/a", "user/a/deep", "user/b" }));
        Assert.That(entries.Select(e => e.Value), Is.EqualTo(entries.Select(e => Bytes("v:" + e.Key))));
    }

    [Test, CancelAfter(10000)]
    public async Task Scan_ReturnsEachKeyOnceWithItsLatestValue_AndSkipsDeletedKeys(CancellationToken ct)
    {
        await Store.PutAsync("p/a", Bytes("1"), ct);
        await Store.PutAsync("p/a", Bytes("2"), ct);
        await Store.PutAsync("p/gone", Bytes("x"), ct);
        await Store.DeleteAsync("p/gone", ct);
        await Store.CompareAndSwapAsync("p/cas", null, Bytes("c"), ct);

        var entries = await ToListAsync(Store.ScanAsync("p/", ct));
        Assert.That(entries.Select(e => e.Key), Is.EqualTo(new[] { "p/a", "p/cas" }));
        Assert.That(entries[0].Value, Is.EqualTo(Bytes("2")));
    }

    [Test, CancelAfter(10000)]
    public async Task Scan_WithEmptyPrefix_ReturnsEverything(CancellationToken ct)
    {
        await Store.PutAsync("a", Bytes("1"), ct);
        await Store.PutAsync("b", Bytes("2"), ct);
        var entries = await ToListAsync(Store.ScanAsync(string.Empty, ct));
        Assert.That(entries.Select(e => e.Key), Is.EqualTo(new[] { "a", "b" }));
    }

    [Test, CancelAfter(10000)]
    public async Task Scan_ReturnsNothing_WhenNoKeyHasThePrefix(CancellationToken ct)
    {
        await Store.PutAsync("a", Bytes("1"), ct);
        Assert.That(await ToListAsync(Store.ScanAsync("zzz", ct)), Is.Empty);
    }

    [Test, CancelAfter(10000)]
    public async Task SubStore_IsAPrefixOfTheParent(CancellationToken ct)
    {
        var users = Store.SubStore("users");
        await users.PutAsync("alice", Bytes("a"), ct);
        Assert.That(await Store.GetAsync("users/alice", ct), Is.EqualTo(Bytes("a")));
        Assert.That(await Store.GetAsync("alice", ct), Is.Null);
        await Store.PutAsync("users/bob", Bytes("b"), ct);
        Assert.That(await users.GetAsync("bob", ct), Is.EqualTo(Bytes("b")));
    }

    [Test, CancelAfter(10000)]
    public async Task SubStore_KeepsSameKeysOfDifferentSubStoresApart(CancellationToken ct)
    {
        var users = Store.SubStore("users");
        var keys = Store.SubStore("keys");
        await users.PutAsync("id", Bytes("user"), ct);
        await keys.PutAsync("id", Bytes("key"), ct);
        Assert.That(await users.GetAsync("id", ct), Is.EqualTo(Bytes("user")));
        Assert.That(await keys.GetAsync("id", ct), Is.EqualTo(Bytes("key")));
        Assert.That(await users.DeleteAsync("id", ct), Is.True);
        Assert.That(await keys.GetAsync("id", ct), Is.EqualTo(Bytes("key")));
    }

    [Test, CancelAfter(10000)]
    public async Task SubStore_ScanStaysInsideTheSubStore_AndShowsRelativeKeys(CancellationToken ct)
    {
        await Store.PutAsync("users", Bytes("root-level"), ct);
        await Store.PutAsync("usersX/b", Bytes("neighbour"), ct);
        await Store.PutAsync("users/a", Bytes("1"), ct);
        await Store.PutAsync("users/x/y", Bytes("2"), ct);

        var users = Store.SubStore("users");
        var all = await ToListAsync(users.ScanAsync(string.Empty, ct));
        Assert.That(all.Select(e => e.Key), Is.EqualTo(new[] { "a", "x/y" }));
        var underX = await ToListAsync(users.ScanAsync("x/", ct));
        Assert.That(underX.Select(e => e.Key), Is.EqualTo(new[] { "x/y" }));
    }

    [Test, CancelAfter(10000)]
    public async Task SubStore_Nests(CancellationToken ct)
    {
        var tenant = Store.SubStore("tenants").SubStore("acme");
        await tenant.PutAsync("k", Bytes("v"), ct);
        Assert.That(await Store.GetAsync("tenants/acme/k", ct), Is.EqualTo(Bytes("v")));
        Assert.That(await Store.SubStore("tenants").GetAsync("acme/k", ct), Is.EqualTo(Bytes("v")));
        var scanned = await ToListAsync(Store.SubStore("tenants").ScanAsync(string.Empty, ct));
        Assert.That(scanned.Select(e => e.Key), Is.EqualTo(new[] { "acme/k" }));
        Assert.That(await tenant.CompareAndSwapAsync("k", Bytes("v"), null, ct), Is.True);
        Assert.That(await Store.GetAsync("tenants/acme/k", ct), Is.Null);
    }

    [Test]
    public void SubStore_RejectsEmptyOrSlashedNames()
    {
        Assert.That(() => Store.SubStore(string.Empty), Throws.ArgumentException);
        Assert.That(() => Store.SubStore("a/b"), Throws.ArgumentException);
    }

    [Test, CancelAfter(20000)]
    public async Task ConcurrentPuts_ToDistinctKeys_AreAllReadable(CancellationToken ct)
    {
        await Task.WhenAll(Enumerable.Range(0, 16).Select(w => Task.Run(
            async () =>
            {
                for (var i = 0; i < 50; i++)
                {
                    await Store.PutAsync($"w{w}/{i}", BitConverter.GetBytes((w * 1000) + i), ct);
                }
            },
            ct)));
        // Mismatches are collected and asserted once: an NUnit assertion per key was 75 of the 90 ms this
        // took on the in-memory store.
        var wrong = new List<string>();
        for (var w = 0; w < 16; w++)
        {
            for (var i = 0; i < 50; i++)
            {
                var read = await Store.GetAsync($"w{w}/{i}", ct);
                if (read is null || !read.AsSpan().SequenceEqual(BitConverter.GetBytes((w * 1000) + i)))
                    wrong.Add($"w{w}/{i}={(read is null ? "absent" : Convert.ToHexString(read))}");
            }
        }

        Assert.That(wrong, Is.Empty, "keys not read back as written");
    }

    protected static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    protected static async Task<List<KeyValuePair<string, byte[]>>> ToListAsync(IAsyncEnumerable<KeyValuePair<string, byte[]>> source)
    {
        var list = new List<KeyValuePair<string, byte[]>>();
        await foreach (var item in source)
        {
            list.Add(item);
        }

        return list;
    }
}
