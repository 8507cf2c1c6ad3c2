using System.Buffers.Binary;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Trust;

/// <summary>
/// The operator's signed revocation list: what the cluster key signed round-trips through its text and bytes, only
/// that key's signature over those exact bytes verifies, a newer list replaces an older one, and any other input
/// (truncated, oversized, random, lying about its counts) is a <see cref="FormatException"/>.
/// </summary>
[TestFixture]
public sealed class SignedRevocationListTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);
    private static readonly ClusterKey Cluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)0x41, 32).ToArray()));
    private static readonly ClusterKey OtherCluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)0x42, 32).ToArray()));
    private static readonly PeerId Peer = KeyPair.FromSeed(Enumerable.Repeat((byte)0x43, 32).ToArray()).PeerId;

    private static RevocationList Entries => new([6, 7, 0xfedcba9876543210], [Peer]);

    [Test]
    public void ASignedList_RoundTripsThroughItsText_AndVerifiesUnderItsClusterOnly()
    {
        var signed = Cluster.SignRevocations(Entries, Now.AddMilliseconds(5));

        var read = SignedRevocationList.FromText("  " + signed.ToText() + "\n");

        Assert.Multiple(() =>
        {
            Assert.That(read.IsSignedBy(Cluster.Id), Is.True);
            Assert.That(read.IsSignedBy(OtherCluster.Id), Is.False);
            Assert.That(read.Issued, Is.EqualTo(Now.AddMilliseconds(5)), "issued to the millisecond, so two lists signed in one second are ordered");
            Assert.That(read.List.ToText(), Is.EqualTo(Entries.ToText()));
            Assert.That(RevocationList.Parse(signed.ToText()).ToText(), Is.EqualTo(Entries.ToText()), "a plain reader takes a signed file's entries");
            Assert.That(SignedRevocationList.IsSignedText(Entries.ToText()), Is.False);
        });
    }

    [Test]
    public void ABitChangedAnywhereBeforeTheSignature_FailsToVerifyOrToDecode()
    {
        var bytes = Cluster.SignRevocations(Entries, Now).Bytes.ToArray();
        var verified = 0;
        // Past the version byte and the cluster key, whose changes name another version or cluster.
        for (var i = 33; i < bytes.Length; i++)
        {
            var changed = (byte[])bytes.Clone();
            changed[i] ^= 0x01;
            try
            {
                if (SignedRevocationList.Decode(changed).IsSignedBy(Cluster.Id)) verified++;
            }
            catch (FormatException)
            {
                // A changed count or length: refused before the signature is looked at.
            }
        }
        Assert.That(verified, Is.Zero);
    }

    [Test]
    public void AnEmptyList_IsValid_AndLiftsEverything()
    {
        var signed = Cluster.SignRevocations(RevocationList.Empty, Now);
        Assert.That(SignedRevocationList.Decode(signed.Bytes.Span).List.Count, Is.Zero);
        Assert.That(signed.IsSignedBy(Cluster.Id), Is.True);
    }

    [Test]
    public void Verifier_TakesOnlyNewerListsOfItsCluster_AndRefusesTheGrantsTheyRevoke()
    {
        var verifier = new GrantVerifier(Cluster.Id, new FakeTimeProvider(Now));
        var grant = Cluster.Issue(Peer, GrantRole.Gateway, Now.AddHours(-1), Now.AddHours(1), 7);
        var first = Cluster.SignRevocations(Entries, Now);
        var lift = Cluster.SignRevocations(RevocationList.Empty, Now.AddMinutes(1));

        var servedBefore = verifier.Check(grant, Peer, GrantRole.Gateway);
        var tookFirst = verifier.Adopt(first, out _);
        var revoked = verifier.Check(grant, Peer, GrantRole.Gateway);
        var tookOther = verifier.Adopt(OtherCluster.SignRevocations(RevocationList.Empty, Now.AddDays(1)), out var otherReason);
        var tookSame = verifier.Adopt(first, out var sameReason);
        var tookLift = verifier.Adopt(lift, out _);
        var tookOlder = verifier.Adopt(first, out _);

        Assert.Multiple(() =>
        {
            Assert.That(servedBefore, Is.Null);
            Assert.That(tookFirst, Is.EqualTo(RevocationListAdoption.Taken));
            Assert.That(revoked, Does.Contain("revoked"));
            Assert.That(tookOther, Is.EqualTo(RevocationListAdoption.Refused));
            Assert.That(otherReason, Does.Contain("another cluster"));
            Assert.That(tookSame, Is.EqualTo(RevocationListAdoption.NotNewer), "a list is taken once");
            Assert.That(sameReason, Does.Contain("not newer"));
            Assert.That(tookLift, Is.EqualTo(RevocationListAdoption.Taken), "a newer list replaces the older one whole");
            Assert.That(verifier.Check(grant, Peer, GrantRole.Gateway), Is.Null, "so the operator lifts a revocation by signing a list without it");
            Assert.That(tookOlder, Is.EqualTo(RevocationListAdoption.NotNewer), "an older list never comes back");
            Assert.That(verifier.SignedRevocations, Is.SameAs(lift));
        });
    }

    [Test]
    public void Verifier_RefusesAListWhoseSignatureDoesNotVerify()
    {
        var verifier = new GrantVerifier(Cluster.Id, new FakeTimeProvider(Now));
        var bytes = Cluster.SignRevocations(Entries, Now).Bytes.ToArray();
        bytes[^1] ^= 0x80;

        Assert.That(verifier.Adopt(SignedRevocationList.Decode(bytes), out var reason), Is.EqualTo(RevocationListAdoption.Refused));
        Assert.That(reason, Does.Contain("signature"));
        Assert.That(verifier.SignedRevocations, Is.Null);
    }

    [Test]
    public void Decode_OfEveryTruncation_IsAFormatException()
    {
        var bytes = Cluster.SignRevocations(Entries, Now).Bytes.ToArray();
        for (var length = 0; length < bytes.Length; length++)
            Assert.Throws<FormatException>(() => SignedRevocationList.Decode(bytes.AsSpan(0, length)), $"cut to {length} bytes");
        Assert.Throws<FormatException>(() => SignedRevocationList.Decode([.. bytes, 0]), "a trailing byte");
    }

    [Test]
    public void Decode_OfOversizedInput_IsAFormatException_AndTextOfItToo()
    {
        var huge = new byte[SignedRevocationList.MaxEncodedLength + 1];
        huge[0] = SignedRevocationList.Version;

        Assert.Throws<FormatException>(() => SignedRevocationList.Decode(huge));
        Assert.Throws<FormatException>(() => SignedRevocationList.FromText(SignedRevocationList.TextPrefix + new string('A', SignedRevocationList.MaxEncodedLength * 2)));
        Assert.Throws<FormatException>(() => SignedRevocationList.FromText(SignedRevocationList.TextPrefix + "not*base64"));
        Assert.Throws<FormatException>(() => SignedRevocationList.FromText("no prefix"));
    }

    [Test]
    public void Decode_OfCountsThatClaimMoreThanTheBytesHold_IsAFormatException_BeforeAnythingIsAllocated()
    {
        var bytes = Cluster.SignRevocations(Entries, Now).Bytes.ToArray();
        var serialCountAt = 1 + 32 + 8;
        var lying = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(lying.AsSpan(serialCountAt), uint.MaxValue);
        var before = GC.GetAllocatedBytesForCurrentThread();

        var error = Assert.Throws<FormatException>(() => SignedRevocationList.Decode(lying));

        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(64 * 1024), "no set sized by the claimed count");
        Assert.That(error!.Message, Does.Contain("more than its bytes hold"));
        var peerCountAt = serialCountAt + 4 + (3 * 8);
        BinaryPrimitives.WriteUInt32BigEndian(lying.AsSpan(serialCountAt), 3);
        BinaryPrimitives.WriteUInt32BigEndian(lying.AsSpan(peerCountAt), uint.MaxValue);
        Assert.Throws<FormatException>(() => SignedRevocationList.Decode(lying));
    }

    [Test]
    public void Decode_OfAListNamingAnEntryTwice_IsAFormatException()
    {
        var bytes = Cluster.SignRevocations(new RevocationList([6, 7], []), Now).Bytes.ToArray();
        var secondSerialAt = 1 + 32 + 8 + 4 + 8;
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(secondSerialAt), 6);

        Assert.That(Assert.Throws<FormatException>(() => SignedRevocationList.Decode(bytes))!.Message, Does.Contain("twice"));
    }

    [Test]
    public void Decode_OfRandomAndMutatedInput_OnlyEverFailsWithFormatException()
    {
        var random = TestSeed.CreateRandom();
        var valid = Cluster.SignRevocations(Entries, Now).Bytes.ToArray();
        var decoded = 0;
        for (var i = 0; i < 1000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[random.Next(0, 400)];
                random.NextBytes(input);
                if (input.Length > 0 && random.Next(2) == 0) input[0] = SignedRevocationList.Version;
            }
            else
            {
                input = (byte[])valid.Clone();
                for (var flips = random.Next(1, 4); flips > 0; flips--) input[random.Next(input.Length)] = (byte)random.Next(256);
            }
            try
            {
                var list = SignedRevocationList.Decode(input);
                decoded++;
                Assert.That(list.IsSignedBy(Cluster.Id), Is.EqualTo(input.AsSpan().SequenceEqual(valid)), "only the unchanged list verifies");
            }
            catch (FormatException)
            {
            }
        }
        Assert.That(decoded, Is.GreaterThan(0), "not vacuous: some mutations still decode and are refused by their signature");
    }
}
