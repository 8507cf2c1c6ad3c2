using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Trust;

/// <summary>The trust layer's memory of peers whose grant query failed: bounded in time and in size, and shorter for peers that may just have been down.</summary>
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

        foreach (var peer in peers) failed.Remember(peer, "no answer", backOff: false);

        Assert.Multiple(() =>
        {
            Assert.That(failed.Count, Is.EqualTo(TrustedRpcClient.MaxRemembered));
            Assert.That(failed.TryGet(peers[^1], out var reason, out _, out _), Is.True, "the newest is remembered");
            Assert.That(reason, Is.EqualTo("no answer"));
            Assert.That(failed.TryGet(peers[^TrustedRpcClient.MaxRemembered], out _, out _, out _), Is.True);
            Assert.That(failed.TryGet(peers[^(TrustedRpcClient.MaxRemembered + 1)], out _, out _, out _), Is.False, "the oldest gave way");
        });
    }

    [Test]
    public void AFailureTheyAnswered_IsHeldForTheTtl_ThenForgotten_AndTheOldestMakesRoom()
    {
        var time = new FakeTimeProvider();
        var failed = new FailedGrantQueries(time, Ttl, capacity: 2);
        var (a, b, c) = (Peer(1), Peer(2), Peer(3));

        failed.Remember(a, "permission denied", backOff: false);
        time.Advance(TimeSpan.FromSeconds(20));
        failed.Remember(b, "internal error", backOff: false);
        var aAtTwenty = failed.TryGet(a, out _, out var ageAtTwenty, out _);
        time.Advance(TimeSpan.FromSeconds(10));
        var aAtThirty = failed.TryGet(a, out _, out _, out _);
        failed.Remember(c, "internal error", backOff: false);
        failed.Forget(b);

        Assert.Multiple(() =>
        {
            Assert.That(aAtTwenty, Is.True);
            Assert.That(ageAtTwenty, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(aAtThirty, Is.False, "forgotten once the TTL has passed");
            Assert.That(failed.TryGet(b, out _, out _, out _), Is.False, "forgotten on request (its query was answered since)");
            Assert.That(failed.TryGet(c, out _, out _, out _), Is.True);
            Assert.That(failed.Count, Is.EqualTo(1));
        });
    }

    [Test]
    public void UnreachableOrSilent_IsHeldAnEighthOfTheTtl_DoublingWithEachFailureInARow_UpToTheTtl()
    {
        var time = new FakeTimeProvider();
        var failed = new FailedGrantQueries(time, Ttl, capacity: 10);
        var peer = Peer(1);
        var held = new List<TimeSpan>();

        // Each failure as soon as the last one stops being held: the peer is asked again then, and still silent.
        for (var i = 0; i < 6; i++)
        {
            failed.Remember(peer, "no answer", backOff: true);
            failed.TryGet(peer, out _, out _, out var heldFor);
            held.Add(heldFor);
            time.Advance(heldFor - TimeSpan.FromTicks(1));
            Assert.That(failed.TryGet(peer, out _, out _, out _), Is.True, $"failure {i + 1} is held until its back-off ends");
            time.Advance(TimeSpan.FromTicks(1));
            Assert.That(failed.TryGet(peer, out _, out _, out _), Is.False, $"failure {i + 1} is not held past its back-off");
        }
        // Answered since: the next failure starts afresh. Nor does one two periods after the last count as in a row.
        failed.Forget(peer);
        failed.Remember(peer, "no answer", backOff: true);
        failed.TryGet(peer, out _, out _, out var afterAnAnswer);
        failed.Remember(peer, "no answer", backOff: true);
        time.Advance(2 * Ttl);
        failed.Remember(peer, "no answer", backOff: true);
        failed.TryGet(peer, out _, out _, out var afterAQuietSpell);

        Assert.Multiple(() =>
        {
            Assert.That(held, Is.EqualTo(new[] { Ttl / 8, Ttl / 4, Ttl / 2, Ttl, Ttl, Ttl }));
            Assert.That(afterAnAnswer, Is.EqualTo(Ttl / 8));
            Assert.That(afterAQuietSpell, Is.EqualTo(Ttl / 8));
        });
    }

    [Test]
    public void FailuresWhileTheLastIsHeld_DoNotCountAsFailuresInARow_NorShortenTheHold()
    {
        var time = new FakeTimeProvider();
        var failed = new FailedGrantQueries(time, Ttl, capacity: 10);
        var peer = Peer(1);

        // Twenty calls asked the peer at once while it was down: their queries all fail, a little apart.
        for (var i = 0; i < 20; i++)
        {
            failed.Remember(peer, "no answer", backOff: true);
            time.Advance(TimeSpan.FromMilliseconds(10));
        }
        failed.TryGet(peer, out _, out var age, out var held);
        var heldUntil = held - age;
        // Its first failure after that hold is the second in a row.
        time.Advance(heldUntil);
        var stillHeldAtItsEnd = failed.TryGet(peer, out _, out _, out _);
        failed.Remember(peer, "no answer", backOff: true);
        failed.TryGet(peer, out _, out _, out var second);
        // One the peer answered with (held the whole TTL) is not cut short by a back-off failure of a query already under way.
        var other = Peer(2);
        failed.Remember(other, "permission denied", backOff: false);
        time.Advance(TimeSpan.FromSeconds(1));
        failed.Remember(other, "no answer", backOff: true);
        failed.TryGet(other, out _, out var otherAge, out var otherHeld);

        Assert.Multiple(() =>
        {
            Assert.That(held, Is.EqualTo(Ttl / 8), "twenty failures of queries under way at once count as one");
            Assert.That(heldUntil, Is.EqualTo(Ttl / 8 - TimeSpan.FromMilliseconds(10)), "held from the last of them");
            Assert.That(stillHeldAtItsEnd, Is.False);
            Assert.That(second, Is.EqualTo(Ttl / 4));
            Assert.That(otherHeld - otherAge, Is.EqualTo(Ttl - TimeSpan.FromSeconds(1)));
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
