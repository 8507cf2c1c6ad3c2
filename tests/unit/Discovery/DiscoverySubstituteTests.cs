using NSubstitute;
using NSubstitute.ExceptionExtensions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Discovery;

/// <summary>
/// The pattern for a test that is not about discovery and needs one exact answer from it: substitute
/// <see cref="IDiscovery"/> with NSubstitute and say what the one lookup returns (or throws), then
/// check what the code under test did with it. Reach for the mock DHT
/// (<c>P2PInference.TestKit.Discovery.MockDhtRegistry</c>) instead when the test needs behaviour over
/// time: several peers announcing, records expiring, re-announces, lookup delays.
/// </summary>
public sealed class DiscoverySubstituteTests
{
    private const string Topic = "p2pinference/model/tiny";

    [Test]
    public async Task FirstProvider_IsThePeerDiscoveryAnswers_WhenSubstituted()
    {
        var random = TestSeed.CreateRandom();
        var processor = new DiscoveredPeer(KeyPair.FromRandom(random).PeerId, [Multiaddress.Memory("processor")]);
        var discovery = Substitute.For<IDiscovery>();
        discovery.LookupAsync(Topic, Arg.Any<CancellationToken>()).Returns([processor]);

        var chosen = await FirstProviderAsync(discovery, Topic, CancellationToken.None);

        Assert.That(chosen, Is.EqualTo(processor.PeerId));
        await discovery.Received(1).LookupAsync(Topic, Arg.Any<CancellationToken>());
    }

    [Test]
    public void FirstProvider_PassesOnTheError_WhenSubstituteThrows()
    {
        var discovery = Substitute.For<IDiscovery>();
        discovery.LookupAsync(Topic, Arg.Any<CancellationToken>()).ThrowsAsync(new TimeoutException("DHT query timed out"));

        Assert.That(async () => await FirstProviderAsync(discovery, Topic, CancellationToken.None), Throws.TypeOf<TimeoutException>());
    }

    [Test]
    public async Task FirstProvider_IsNull_WhenSubstituteFindsNobody()
    {
        var discovery = Substitute.For<IDiscovery>();
        discovery.LookupAsync(Topic, Arg.Any<CancellationToken>()).Returns([]);

        Assert.That(await FirstProviderAsync(discovery, Topic, CancellationToken.None), Is.Null);
    }

    // Stands in for the code under test (e.g. a gateway choosing a processor for a model).
    private static async Task<PeerId?> FirstProviderAsync(IDiscovery discovery, string topic, CancellationToken cancellationToken)
    {
        var providers = await discovery.LookupAsync(topic, cancellationToken);
        return providers.Count == 0 ? null : providers[0].PeerId;
    }
}
