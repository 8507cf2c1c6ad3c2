using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Trust;

/// <summary>The trust layer's memory of peers whose grant query failed: bounded in time and in size.</summary>
[TestFixture]
public sealed class FailedGrantQueriesTests
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(30);

    [Test]
    public void FloodOfFailingPeers_IsHeldToTheCapacity_TheOldestGivingWay()
    {
        var time = new FakeTimeProvider();
        var failed = new FailedGrantQueries(time, Ttl, TrustedRpcClient.MaxRemembered);
        var peers = Enumerable.Range(0, TrustedRpcClient.MaxRemembered + 1000).Select(Peer).ToArray();

        foreach (var peer in peers) failed.Remember(peer, "no answer");

        Assert.Multiple(() =>
        {
            Assert.That(failed.Count, Is.EqualTo(TrustedRpcClient.MaxRemembered));
            Assert.That(failed.TryGet(peers[^1], out var reason, out _), Is.True, "the newest is remembered");
            Assert.That(reason, Is.EqualTo("no answer"));
            Assert.That(failed.TryGet(peers[^TrustedRpcClient.MaxRemembered], out _, out _), Is.True);
            Assert.That(failed.TryGet(peers[^(TrustedRpcClient.MaxRemembered + 1)], out _, out _), Is.False, "the oldest gave way");
        });
    }

    [Test]
    public void AFailure_IsRememberedForTheTtl_ThenForgotten_AndExpiredOnesMakeRoom()
    {
        var time = new FakeTimeProvider();
        var failed = new FailedGrantQueries(time, Ttl, capacity: 2);
        var (a, b, c) = (Peer(1), Peer(2), Peer(3));

        failed.Remember(a, "unreachable");
        time.Advance(TimeSpan.FromSeconds(20));
        failed.Remember(b, "no answer");
        var aAtTwenty = failed.TryGet(a, out _, out var ageAtTwenty);
        time.Advance(TimeSpan.FromSeconds(10));
        var aAtThirty = failed.TryGet(a, out _, out _);
        failed.Remember(c, "no answer");
        failed.Forget(b);

        Assert.Multiple(() =>
        {
            Assert.That(aAtTwenty, Is.True);
            Assert.That(ageAtTwenty, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(aAtThirty, Is.False, "forgotten once the TTL has passed");
            Assert.That(failed.TryGet(b, out _, out _), Is.False, "forgotten on request (its query was answered since)");
            Assert.That(failed.TryGet(c, out _, out _), Is.True);
            Assert.That(failed.Count, Is.EqualTo(1));
        });
    }

    /// <summary>A sha2-256 PeerId made from <paramref name="n"/>: cheap, so a flood costs no key generation.</summary>
    private static PeerId Peer(int n)
    {
        var multihash = new byte[34];
        multihash[0] = 0x12;
        multihash[1] = 0x20;
        BitConverter.TryWriteBytes(multihash.AsSpan(2), n);
        return PeerId.FromBytes(multihash);
    }
}
