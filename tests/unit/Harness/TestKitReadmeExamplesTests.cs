using System.Text.RegularExpressions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;
using P2PInference.TestKit.Store;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.Unit.Harness;

/// <summary>
/// The TestKit README's C# examples, run. Each example appears here verbatim, between the set-up a
/// reader would have around it, and <see cref="EveryCSharpBlockOfTheReadme_IsCodeThatTheTestsCompileAndRun"/>
/// fails when a README block is found in no test source: a changed API breaks the build here, and a
/// changed README that nothing runs breaks that test. Other P2P projects start from these blocks.
/// The examples that start clusters or the FASTER engine are integration tests
/// (<c>TestKitReadmeClusterExamplesTests</c>).
/// </summary>
public sealed class TestKitReadmeExamplesTests
{
    [Test]
    public void Seeds()
    {
        var seed = TestSeed.Choose();        // P2P_TEST_SEED if set, else fresh; written to the test output
        var random = new Random(seed);

        Assert.That(random.Next(), Is.EqualTo(new Random(seed).Next()), "the seed decides the sequence");
    }

    [Test]
    public void SimulationExecutor_RunsANodeOnItsThread_AndReplaysByTrace()
    {
        ulong Once()
        {
            var sim = new SimulationExecutor(seed: TestSeed.Choose(), ScheduleStrategy.Fifo); // or Random, Pct
            sim.Run(async () =>
            {
                var network = new InMemoryNetwork(sim.Clock, sim.Seed);
                var a = await sim.StartHostAsync(network, "a"); // a libp2p host as node "a", its keys drawn from the seed
                var b = await sim.StartHostAsync(network, "b", sim.HostOptionsFor(network, "b") with { IdentifyOnConnect = false });
                await b.ConnectAsync(a.AdvertisedAddresses[0], CancellationToken.None);
                // act, assert
                await b.DisposeAsync();
                await a.DisposeAsync();
            });
            Console.WriteLine(sim); // seed=… strategy=… trace=<hash> steps=… virtual=…
            return sim.TraceHash;
        }

        var first = Once();
        Assert.That(Once(), Is.EqualTo(first), "one seed, one trace");
    }

    [Test]
    public void Timer_FiresAfterItsDueTime() => SimulationTest.Run(async sim =>
    {
        var expired = false;
        using var timer = sim.Clock.CreateTimer(_ => expired = true, null, TimeSpan.FromSeconds(30), Timeout.InfiniteTimeSpan);
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(30));
        Assert.That(expired, Is.True);
    });

    [Test]
    public void InMemoryNetwork_HostListensAtItsMemoryAddress() => SimulationTest.Run(async sim =>
    {
        var time = sim.Clock;
        var token = CancellationToken.None;

        var network = new InMemoryNetwork(time, TestSeed.Choose());
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.FromRandom(sim.CreateRandom("identity", "a")),
            Transports = [network.CreateTransport("a")],
            TimeProvider = time,
        });
        await host.StartAsync([InMemoryNetwork.AddressOf("a")], token);   // /memory/a

        await using (host)
        {
            Assert.That(host.ListenAddresses, Does.Contain(Multiaddress.Parse("/memory/a")));
        }
    });

    [Test]
    public void MockDht_AnnounceLookupAndCrash() => SimulationTest.Run(async sim =>
    {
        var time = sim.Clock;
        var seed = sim.Seed;
        var token = CancellationToken.None;
        var host = (PeerId: PeerId.FromPublicKey(KeyPair.FromRandom(sim.CreateRandom("a")).PublicKey), AdvertisedAddresses: (IReadOnlyList<Multiaddress>)[InMemoryNetwork.AddressOf("a")]);

        var other = (PeerId: PeerId.FromPublicKey(KeyPair.FromRandom(sim.CreateRandom("b")).PublicKey), AdvertisedAddresses: (IReadOnlyList<Multiaddress>)[InMemoryNetwork.AddressOf("b")]);

        var registry = new MockDhtRegistry(time, seed) { RecordTtl = TimeSpan.FromMinutes(1) };
        var dht = registry.CreateNode(host.PeerId, host.AdvertisedAddresses);   // an IDiscovery
        var otherDht = registry.CreateNode(other.PeerId, other.AdvertisedAddresses);
        await dht.AnnounceAsync("p2pinference/processor", token);
        var providers = await otherDht.LookupAsync("p2pinference/processor", token);
        dht.Crash();   // records go stale and expire after the TTL; DisposeAsync() withdraws them

        Assert.That(providers.Select(p => p.PeerId), Is.EqualTo(new[] { host.PeerId }));
        await sim.Clock.AdvanceAsync(TimeSpan.FromMinutes(2));
        Assert.That(await otherDht.LookupAsync("p2pinference/processor", token), Is.Empty, "a crashed node's record expires");
    });

    [Test]
    public void SimulatedStore_KeepsAcknowledgedWrites_AndAFullDiskChangesNothing() => SimulationTest.Run(async sim =>
    {
        var token = CancellationToken.None;
        var value = new byte[] { 1, 2, 3 };

        await using var store = new SimulatedStore();
        await store.PutAsync("k", value, token);                      // acknowledged = durable
        await store.CrashAndRestartAsync(token);                      // acknowledged writes survive
        store.FailWrites = true;                                      // a full disk: writes throw StoreException, change nothing

        Assert.That(await store.GetAsync("k", token), Is.EqualTo(value));
        await Assert.ThatAsync(() => store.PutAsync("k", new byte[] { 9 }, token).AsTask(), Throws.InstanceOf<P2PInference.Facilities.Store.StoreException>());
        Assert.That(await store.GetAsync("k", token), Is.EqualTo(value));
    });

    [Test]
    public void TestData_IsUniqueAndRepeatsForTheSeed()
    {
        var seed = 4242;

        var data = new TestDataFactory(seed);          // or cluster.Data
        var user = data.User();      // user-1-<seed>@test.invalid, a policy-compliant password, a name
        var key = data.ApiKey();     // p2pi_ + 40 base-62 characters
        var id = data.RequestId();   // GUID-shaped, from the seed
        var prompt = data.Prompt();
        var bytes = data.Payload(1024);

        var again = new TestDataFactory(seed);
        Assert.Multiple(() =>
        {
            Assert.That(user.Email, Is.EqualTo("user-1-4242@test.invalid"));
            Assert.That(key, Does.Match("^p2pi_[0-9A-Za-z]{40}$"));
            Assert.That(Guid.TryParse(id, out _), Is.True);
            Assert.That((again.User().Email, again.ApiKey(), again.RequestId(), again.Prompt(), again.Payload(1024)),
                Is.EqualTo((user.Email, key, id, prompt, bytes)));
        });
    }

    [Test]
    public void EveryCSharpBlockOfTheReadme_IsCodeThatTheTestsCompileAndRun()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "src", "TestKit", "README.md"));
        var blocks = Regex.Matches(readme, @"^```csharp\n(.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)
            .Select(m => Lines(m.Groups[1].Value))
            .ToList();
        // The test tiers only: tests/interop-js holds a node_modules tree that takes longer to walk than the rest.
        var sources = new[] { "unit", "integration", "e2e" }
            .SelectMany(tier => Directory.EnumerateFiles(Path.Combine(RepositoryPaths.Root, "tests", tier), "*.cs", SearchOption.AllDirectories))
            .Where(path => !path.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !path.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .Select(File.ReadAllText)
            .Where(text => blocks.Any(block => text.Contains(block[0], StringComparison.Ordinal)))
            .Select(Lines)
            .ToList();

        Assert.That(blocks, Is.Not.Empty, "the README has C# examples");
        var missing = blocks
            .Where(block => !sources.Any(source => Contains(source, block)))
            .Select(block => string.Join("\n", block))
            .ToList();
        Assert.That(missing, Is.Empty,
            "each C# block of src/TestKit/README.md must appear, line for line (indentation aside), in a test that compiles and runs it; " +
            "these appear in none:\n\n" + string.Join("\n\n---\n\n", missing));
    }

    private static string[] Lines(string text) =>
        text.Replace("\r\n", "\n").Split('\n').Select(line => line.Trim()).Where(line => line.Length > 0).ToArray();

    private static bool Contains(string[] source, string[] block)
    {
        for (var start = 0; start + block.Length <= source.Length; start++)
        {
            if (source.AsSpan(start, block.Length).SequenceEqual(block))
            {
                return true;
            }
        }

        return false;
    }
}
