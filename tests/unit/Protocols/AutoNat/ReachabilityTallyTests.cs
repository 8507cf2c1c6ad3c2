using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Protocols.AutoNat;

namespace P2PInference.Tests.Unit.Protocols.AutoNat;

public sealed class ReachabilityTallyTests
{
    private static readonly Multiaddress Reached = Multiaddress.Parse("/ip4/198.51.100.7/tcp/4001");
    private static readonly AutoNatDialResponse Ok = new(AutoNatResponseStatus.Ok, "", Reached);
    private static readonly AutoNatDialResponse Failed = new(AutoNatResponseStatus.DialError, "refused", Reached);
    private static readonly AutoNatDialResponse Refused = AutoNatDialResponse.Refused("busy");

    private static List<NatReachability> Feed(ReachabilityTally tally, params AutoNatDialResponse[] answers)
    {
        var changes = new List<NatReachability>();
        foreach (var answer in answers)
            if (tally.Add(answer)) changes.Add(tally.Status.Reachability);
        return changes;
    }

    [Test]
    public void ThreeAgreeingAnswers_ReachAConclusion_TwoDoNot()
    {
        var tally = new ReachabilityTally(threshold: 3);

        Assert.That(Feed(tally, Ok, Ok), Is.Empty);
        Assert.That(tally.Status, Is.EqualTo(NatStatus.Unknown));
        Assert.That(Feed(tally, Ok), Is.EqualTo(new[] { NatReachability.Public }));
        Assert.That(tally.Status, Is.EqualTo(new NatStatus(NatReachability.Public, 3, Reached)));
    }

    [Test]
    public void Refusals_AreNoEvidence_AndDoNotBreakARun()
    {
        var tally = new ReachabilityTally(threshold: 3);

        Assert.That(Feed(tally, Failed, Refused, Refused, Failed, new(AutoNatResponseStatus.InternalError, "", null), Failed),
            Is.EqualTo(new[] { NatReachability.Private }));
        Assert.That(tally.Status.ReachedAddress, Is.Null);
    }

    [Test]
    public void OneDissentingServer_DoesNotFlipAConclusion()
    {
        var tally = new ReachabilityTally(threshold: 3);
        Feed(tally, Ok, Ok, Ok);

        Assert.That(Feed(tally, Failed, Failed, Ok, Failed, Failed, Ok), Is.Empty, "an agreeing answer breaks every opposing run");
        Assert.That(tally.Status.Reachability, Is.EqualTo(NatReachability.Public));
        Assert.That(Feed(tally, Failed, Failed, Failed), Is.EqualTo(new[] { NatReachability.Private }));
    }

    [Test]
    public void MixedAnswers_FromUnknown_StayUnknown()
    {
        var tally = new ReachabilityTally(threshold: 3);

        Assert.That(Feed(tally, Ok, Failed, Ok, Ok, Failed, Failed, Ok), Is.Empty);
        Assert.That(tally.Status.Reachability, Is.EqualTo(NatReachability.Unknown));
    }

    [Test]
    public void Confidence_GrowsWithAgreement_UpToTwiceTheThreshold()
    {
        var tally = new ReachabilityTally(threshold: 3);

        Feed(tally, Enumerable.Repeat(Ok, 20).ToArray());

        Assert.That(tally.Status.Confidence, Is.EqualTo(6));
    }
}
