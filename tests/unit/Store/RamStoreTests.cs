using System.Text;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.TestKit;
using P2PInference.TestKit.Conformance;
using P2PInference.TestKit.Store;

namespace P2PInference.Tests.Unit.Store;

[TestFixture]
public sealed class RamStoreTests
{
    private RamStore _store = null!;

    [SetUp]
    public async Task SetUp() => _store = await RamStore.CreateAsync();

    [TearDown]
    public async Task TearDown() => await _store.DisposeAsync();

    [Test, CancelAfter(60_000)]
    public async Task CrashAndRestart_KeepsEveryAcknowledgedWrite(CancellationToken ct)
    {
        await _store.PutAsync("kept", Bytes("v1"), ct);
        await _store.PutAsync("overwritten", Bytes("old"), ct);
        await _store.PutAsync("overwritten", Bytes("new"), ct);
        await _store.PutAsync("deleted", Bytes("x"), ct);
        await _store.DeleteAsync("deleted", ct);
        await _store.CompareAndSwapAsync("swapped", null, Bytes("cas"), ct);
        await _store.SubStore("users").PutAsync("alice", Bytes("a"), ct);

        await _store.CrashAndRestartAsync(ct);

        Assert.That(await _store.GetAsync("kept", ct), Is.EqualTo(Bytes("v1")));
        Assert.That(await _store.GetAsync("overwritten", ct), Is.EqualTo(Bytes("new")));
        Assert.That(await _store.GetAsync("deleted", ct), Is.Null);
        Assert.That(await _store.GetAsync("swapped", ct), Is.EqualTo(Bytes("cas")));
        Assert.That(await _store.SubStore("users").GetAsync("alice", ct), Is.EqualTo(Bytes("a")));
        Assert.That(_store.Restarts, Is.EqualTo(1));
    }

    [Test, CancelAfter(60_000)]
    public async Task CrashAndRestart_KeepsCheckpointAndTheLogWrittenAfterIt(CancellationToken ct)
    {
        await _store.PutAsync("before", Bytes("1"), ct);
        await _store.PutAsync("changed", Bytes("old"), ct);
        await _store.Current.CheckpointAsync(ct);
        await _store.PutAsync("after", Bytes("2"), ct);
        await _store.PutAsync("changed", Bytes("new"), ct);
        await _store.DeleteAsync("before", ct);

        await _store.CrashAndRestartAsync(ct);

        Assert.That(await _store.GetAsync("before", ct), Is.Null);
        Assert.That(await _store.GetAsync("after", ct), Is.EqualTo(Bytes("2")));
        Assert.That(await _store.GetAsync("changed", ct), Is.EqualTo(Bytes("new")));
    }

    [Test, CancelAfter(60_000)]
    public async Task CrashAndRestart_Repeatedly_KeepsWritesFromEveryLife(CancellationToken ct)
    {
        for (var life = 0; life < 4; life++)
        {
            await _store.PutAsync("life/" + life, BitConverter.GetBytes(life), ct);
            if (life == 2)
            {
                await _store.RestartAsync(ct);
            }

            await _store.CrashAndRestartAsync(ct);
        }

        var scanned = new List<string>();
        await foreach (var entry in _store.ScanAsync("life/", ct))
        {
            scanned.Add(entry.Key);
        }

        Assert.That(scanned, Is.EqualTo(new[] { "life/0", "life/1", "life/2", "life/3" }));
    }

    [Test, CancelAfter(60_000)]
    public async Task CrashAndRestart_WithWritesInFlight_KeepsAcknowledgedOnesAndNeverAHalfValue(CancellationToken ct)
    {
        var random = TestSeed.CreateRandom();
        var values = Enumerable.Range(0, 200).Select(i => RandomValue(random, 1 + random.Next(4096))).ToArray();
        var acknowledged = new bool[values.Length];
        var firstAcknowledged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var writers = Enumerable.Range(0, values.Length).Select(i => Task.Run(
            async () =>
            {
                try
                {
                    await _store.PutAsync("k" + i, values[i], ct);
                    Volatile.Write(ref acknowledged[i], true);
                    firstAcknowledged.TrySetResult();
                }
                catch (Exception e) when (e is StoreException or ObjectDisposedException)
                {
                    // The crash cut this write: it was never acknowledged.
                }
            },
            ct)).ToArray();
        await firstAcknowledged.Task.WaitAsync(ct);
        var crash = _store.Current.SimulateCrashAsync();
        await Task.WhenAll(writers);
        await crash;
        var acknowledgedBeforeRestart = acknowledged.ToArray();
        await _store.CrashAndRestartAsync(ct);

        for (var i = 0; i < values.Length; i++)
        {
            var read = await _store.GetAsync("k" + i, ct);
            if (acknowledgedBeforeRestart[i])
            {
                BytesAssert.AreEqual(values[i], read, $"acknowledged write k{i} was lost");
            }
            else if (read is not null)
            {
                BytesAssert.AreEqual(values[i], read, $"unacknowledged write k{i} is half there");
            }
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task OldInstance_RefusesCalls_AfterACrash(CancellationToken ct)
    {
        var old = _store.Current;
        await _store.CrashAndRestartAsync(ct);
        Assert.That(async () => await old.PutAsync("k", Bytes("v"), ct), Throws.TypeOf<StoreException>());
        Assert.That(async () => await old.GetAsync("k", ct), Throws.TypeOf<StoreException>());
    }

    // Real threads on a real FASTER log: the guard only catches a hang. At 200 puts a writer, reading
    // 12,800 keys back after the restart took 7-10 s on two cores under a load of 25 and tripped a
    // 10 s guard; 64 writers still contend on the log with a quarter of the keys.
    [Test, CancelAfter(60_000)]
    public async Task ConcurrentWriters_AllReadable_AfterCrash(CancellationToken ct)
    {
        const int writers = 64;
        const int putsEach = 50;
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(
            async () =>
            {
                for (var i = 0; i < putsEach; i++)
                {
                    await _store.PutAsync($"w{w}/{i}", BitConverter.GetBytes((w << 16) | i), ct);
                }
            },
            ct)));

        await _store.CrashAndRestartAsync(ct);

        var count = 0;
        // Mismatches are collected and asserted once: an NUnit assertion per entry costs about a tenth of a
        // millisecond, a third of a second for these 3,200 on a loaded machine.
        var wrong = new List<string>();
        await foreach (var entry in _store.ScanAsync("w", ct))
        {
            var parts = entry.Key[1..].Split('/');
            var expected = BitConverter.GetBytes((int.Parse(parts[0]) << 16) | int.Parse(parts[1]));
            if (!entry.Value.AsSpan().SequenceEqual(expected)) wrong.Add($"{entry.Key}={Convert.ToHexString(entry.Value)}");
            count++;
        }

        Assert.That(wrong, Is.Empty, "entries whose value is not the one written");
        Assert.That(count, Is.EqualTo(writers * putsEach));
    }

    [Test, CancelAfter(60_000)]
    public async Task Messages_RoundTrip_ThroughTheTypedHelpers(CancellationToken ct)
    {
        var codec = MessagePackRpcCodec<ConformanceProbe>.Instance;
        await _store.PutMessageAsync("greeting", new ConformanceProbe { Text = "hello" }, codec, ct);
        var read = await _store.GetMessageAsync("greeting", codec, ct);
        Assert.That(read?.Text, Is.EqualTo("hello"));
        Assert.That(await _store.GetMessageAsync("absent", codec, ct), Is.Null);
    }

    [Test, CancelAfter(60_000)]
    public async Task GetMessage_ThrowsStoreException_WhenTheBytesAreNotThatMessage(CancellationToken ct)
    {
        await _store.PutAsync("garbage", new byte[] { 0xFF, 0xFF, 0xFF }, ct);
        Assert.That(
            async () => await _store.GetMessageAsync("garbage", MessagePackRpcCodec<ConformanceProbe>.Instance, ct),
            Throws.TypeOf<StoreException>().With.Message.Contains("garbage"));
    }

    [Test]
    public void Put_RejectsAKeyThatIsNotValidUnicode()
    {
        Assert.That(async () => await _store.PutAsync("lone\uD800surrogate", Bytes("v"), CancellationToken.None), Throws.ArgumentException);
    }

    [Test]
    public void Put_RejectsOversizedKeysAndValues()
    {
        Assert.That(async () => await _store.PutAsync(new string('k', 20_000), Bytes("v"), CancellationToken.None), Throws.ArgumentException);
        Assert.That(async () => await _store.PutAsync("k", new byte[(4 << 20) + 1], CancellationToken.None), Throws.ArgumentException);
    }

    [Test, CancelAfter(60_000)]
    public async Task Calls_ThrowObjectDisposed_AfterDispose(CancellationToken ct)
    {
        var store = await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { MemorySizeBytes = 1 << 20, ExpectedKeyCount = 1024 }, ct);
        await store.DisposeAsync();
        Assert.That(async () => await store.PutAsync("k", Bytes("v"), ct), Throws.TypeOf<ObjectDisposedException>());
        Assert.That(async () => await store.GetAsync("k", ct), Throws.TypeOf<ObjectDisposedException>());
    }

    [Test, CancelAfter(60_000)]
    public async Task InMemoryStore_RefusesWrites_WhenItsMemoryIsFull(CancellationToken ct)
    {
        await using var store = await FasterKeyValueStore.OpenAsync(new FasterStoreOptions { MemorySizeBytes = 1 << 16, ExpectedKeyCount = 1024 }, ct);
        var written = 0;
        Assert.That(
            async () =>
            {
                for (; written < 100_000; written++)
                {
                    await store.PutAsync("k" + written, Bytes("v"), ct);
                }
            },
            Throws.TypeOf<StoreException>().With.Message.Contains("full"));
        for (var i = 0; i < written; i++)
        {
            Assert.That(await store.GetAsync("k" + i, ct), Is.EqualTo(Bytes("v")), $"k{i} lost");
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task Put_CancelledBeforeStart_WritesNothing(CancellationToken ct)
    {
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        Assert.That(async () => await _store.PutAsync("k", Bytes("v"), cancelled.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(await _store.GetAsync("k", ct), Is.Null);
    }

    private static byte[] Bytes(string text) => System.Text.Encoding.UTF8.GetBytes(text);

    private static byte[] RandomValue(Random random, int length)
    {
        var value = new byte[length];
        random.NextBytes(value);
        return value;
    }
}
