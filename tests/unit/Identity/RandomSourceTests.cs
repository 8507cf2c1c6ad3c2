using NSubstitute;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Client;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Identity;

/// <summary>
/// Production draws from the OS CSPRNG unless told otherwise; a seeded source replays keys and ids
/// exactly. What this guards: a default that quietly became predictable, or a seed that no longer replays.
/// </summary>
[TestFixture]
public sealed class RandomSourceTests
{
    private static SeededRandomSource Seeded(int seed) => new(new Random(seed));

    [Test]
    public void EveryOptionsType_DefaultsToTheSystemSource()
    {
        var host = new HostOptions { Identity = KeyPair.Generate(), Transports = [] };
        var context = new WorkerContext
        {
            Identity = KeyPair.Generate(),
            Server = Substitute.For<IRpcServer>(),
            Client = Substitute.For<IRpcClient>(),
            Discovery = Substitute.For<IDiscovery>(),
            Store = Substitute.For<IKeyValueStore>(),
            Random = new Random(1),
        };
        var runtime = new WorkerRuntimeOptions { Role = WorkerRole.Auth, DataDirectory = "unused" };

        Assert.Multiple(() =>
        {
            Assert.That(host.RandomSource, Is.SameAs(SystemRandomSource.Instance), nameof(HostOptions));
            Assert.That(new RpcOptions().RandomSource, Is.SameAs(SystemRandomSource.Instance), nameof(RpcOptions));
            Assert.That(new ClientOptions().RandomSource, Is.SameAs(SystemRandomSource.Instance), nameof(ClientOptions));
            Assert.That(context.RandomSource, Is.SameAs(SystemRandomSource.Instance), nameof(WorkerContext));
            Assert.That(runtime.RandomSource, Is.SameAs(SystemRandomSource.Instance), nameof(WorkerRuntimeOptions));
        });
    }

    [Test]
    public void Generate_WithTheSameSeed_GivesTheSameKey()
    {
        var first = KeyPair.Generate(Seeded(42));
        var second = KeyPair.Generate(Seeded(42));

        Assert.That(second.PeerId, Is.EqualTo(first.PeerId));
        Assert.That(second.Sign("m"u8), Is.EqualTo(first.Sign("m"u8)), "the private halves match too");
    }

    [Test]
    public void Generate_WithAnotherSeed_GivesAnotherKey() =>
        Assert.That(KeyPair.Generate(Seeded(2)).PeerId, Is.Not.EqualTo(KeyPair.Generate(Seeded(1)).PeerId));

    [Test]
    public void Generate_FromTheSystemSource_GivesAFreshKeyEachTime() =>
        Assert.That(KeyPair.Generate(SystemRandomSource.Instance).PeerId, Is.Not.EqualTo(KeyPair.Generate().PeerId));

    [Test]
    public void NextHex_ReplaysPerSeed_AndHasTheAskedLength()
    {
        var first = Seeded(7);
        var second = Seeded(7);
        var a = Enumerable.Range(0, 5).Select(_ => first.NextHex(16)).ToList();
        var b = Enumerable.Range(0, 5).Select(_ => second.NextHex(16)).ToList();

        Assert.That(b, Is.EqualTo(a));
        Assert.That(a, Is.Unique);
        Assert.That(a, Has.All.Match("^[0-9a-f]{32}$"));
    }

    [Test]
    public void NextSeed_StaysInRandomsRange_EvenWhenEveryBitIsSet()
    {
        var ones = new ConstantSource(0xff);

        Assert.That(ones.NextSeed(), Is.InRange(0, int.MaxValue - 1));
        var replayed = Seeded(3).NextSeed();
        Assert.That(Seeded(3).NextSeed(), Is.EqualTo(replayed));
    }

    [Test]
    public void CreateRandom_FromTheSameSeed_MakesTheSameChoices()
    {
        var a = Seeded(9).CreateRandom();
        var b = Seeded(9).CreateRandom();

        Assert.That(Enumerable.Range(0, 10).Select(_ => b.Next()), Is.EqualTo(Enumerable.Range(0, 10).Select(_ => a.Next())));
    }

    private sealed class ConstantSource(byte value) : IRandomSource
    {
        public void Fill(Span<byte> buffer) => buffer.Fill(value);
    }
}
