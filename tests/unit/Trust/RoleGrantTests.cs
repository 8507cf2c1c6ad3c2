using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Trust;

[TestFixture]
public sealed class RoleGrantTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 5, 12, 0, 0, TimeSpan.Zero);
    private static readonly ClusterKey Cluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)1, 32).ToArray()));
    private static readonly ClusterKey OtherCluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)2, 32).ToArray()));
    private static readonly KeyPair Worker = KeyPair.FromSeed(Enumerable.Repeat((byte)3, 32).ToArray());
    private static readonly KeyPair Stranger = KeyPair.FromSeed(Enumerable.Repeat((byte)4, 32).ToArray());

    private FakeTimeProvider _time = null!;
    private GrantVerifier _verifier = null!;

    [SetUp]
    public void SetUp()
    {
        _time = new FakeTimeProvider(Now);
        _verifier = new GrantVerifier(Cluster.Id, _time, TimeSpan.Zero);
    }

    private static RoleGrant Grant(GrantRole role = GrantRole.Gateway, ClusterKey? signer = null, PeerId? peer = null, ulong serial = 7) =>
        (signer ?? Cluster).Issue(peer ?? Worker.PeerId, role, Now - TimeSpan.FromHours(1), Now + TimeSpan.FromHours(1), serial);

    [Test]
    public void Encoding_RoundTrips_EveryField_AndTheSignatureStillVerifies()
    {
        var grant = Grant(GrantRole.Processor, serial: 0x0123456789abcdef);

        var decoded = RoleGrant.Decode(grant.ToBytes());
        var fromText = RoleGrant.FromText(" " + grant.ToText() + "\n");

        foreach (var g in new[] { decoded, fromText })
        {
            Assert.Multiple(() =>
            {
                Assert.That(g.Cluster, Is.EqualTo(Cluster.Id));
                Assert.That(g.Role, Is.EqualTo(GrantRole.Processor));
                Assert.That(g.Peer, Is.EqualTo(Worker.PeerId));
                Assert.That(g.NotBefore, Is.EqualTo(Now - TimeSpan.FromHours(1)));
                Assert.That(g.Expiry, Is.EqualTo(Now + TimeSpan.FromHours(1)));
                Assert.That(g.Serial, Is.EqualTo(0x0123456789abcdefUL));
                Assert.That(g.SerialText, Is.EqualTo("0123456789abcdef"));
                Assert.That(g.HasValidSignature(), Is.True);
                Assert.That(g.ToBytes(), Is.EqualTo(grant.ToBytes()));
            });
        }
    }

    [Test]
    public void Encoding_IsCanonical_TheSameGrantEncodesToTheSameBytes()
    {
        var first = Grant().ToBytes();
        var second = Grant().ToBytes();
        Assert.That(second, Is.EqualTo(first), "Ed25519 is deterministic and the layout has one form");
        Assert.That(Grant().ToBytes()[0], Is.EqualTo(RoleGrant.Version), "the first byte is the version");
    }

    [Test]
    public void Verifier_AcceptsAValidGrant_ForItsPeerRoleAndCluster()
    {
        Assert.That(_verifier.Check(Grant(), Worker.PeerId, GrantRole.Gateway), Is.Null);
    }

    [Test]
    public void Verifier_RefusesGrants_ThatDoNotFit_WithTheReason()
    {
        Assert.Multiple(() =>
        {
            Assert.That(_verifier.Check((RoleGrant?)null, Worker.PeerId, GrantRole.Gateway), Does.Contain("no grant"));
            Assert.That(_verifier.Check(Grant(signer: OtherCluster), Worker.PeerId, GrantRole.Gateway), Does.Contain("another cluster"));
            Assert.That(_verifier.Check(Grant(GrantRole.Auth), Worker.PeerId, GrantRole.Gateway), Does.Contain("auth role"));
            Assert.That(_verifier.Check(Grant(), Stranger.PeerId, GrantRole.Gateway), Does.Contain("another peer"));
        });
    }

    [Test]
    public void Verifier_RefusesAGrantWhoseBytesWereChanged_SignatureAndAll()
    {
        var bytes = Grant().ToBytes();
        var serialAt = bytes.Length - RoleGrant.SignatureSize - 1;
        bytes[serialAt] ^= 1; // a different serial, same signature
        var tampered = RoleGrant.Decode(bytes);

        Assert.That(_verifier.Check(tampered, Worker.PeerId, GrantRole.Gateway), Does.Contain("signature"));
    }

    [Test]
    public void Verifier_RefusesAGrantSignedByAnotherKey_ThatNamesThisCluster()
    {
        // The cluster field says ours, the signature is another key's: swap in our key after signing with the other.
        var forged = Grant(signer: OtherCluster).ToBytes();
        Cluster.Id.Key.Data.CopyTo(forged.AsSpan(1));

        Assert.That(_verifier.Check(RoleGrant.Decode(forged), Worker.PeerId, GrantRole.Gateway), Does.Contain("signature"));
    }

    [Test]
    public void Verifier_RefusesExpiredAndNotYetValidGrants_AsTheClockMoves()
    {
        var grant = Grant();

        var early = new GrantVerifier(Cluster.Id, new FakeTimeProvider(Now - TimeSpan.FromHours(2)), TimeSpan.Zero)
            .Check(grant, Worker.PeerId, GrantRole.Gateway);
        _time.SetUtcNow(Now + TimeSpan.FromHours(1));
        var expired = _verifier.Check(grant, Worker.PeerId, GrantRole.Gateway);

        Assert.That(expired, Does.Contain("expired"));
        Assert.That(early, Does.Contain("not valid before"));
    }

    [Test]
    public void Verifier_AllowsClockSkew_EachWay()
    {
        var lenient = new GrantVerifier(Cluster.Id, _time, TimeSpan.FromMinutes(1));
        var grant = Grant();

        _time.SetUtcNow(Now + TimeSpan.FromHours(1) - TimeSpan.FromSeconds(1) + TimeSpan.FromSeconds(30));
        Assert.That(lenient.Check(grant, Worker.PeerId, GrantRole.Gateway), Is.Null);
        _time.SetUtcNow(Now + TimeSpan.FromHours(1) + TimeSpan.FromMinutes(1));
        Assert.That(lenient.Check(grant, Worker.PeerId, GrantRole.Gateway), Does.Contain("expired"));
    }

    [Test]
    public void Verifier_RefusesRevokedGrants_BySerialOrByPeer_AsSoonAsTheListChanges()
    {
        var grant = Grant(serial: 42);

        _verifier.Revocations = RevocationList.Parse("# revoked by the operator\n000000000000002a\n");
        var bySerial = _verifier.Check(grant, Worker.PeerId, GrantRole.Gateway);
        _verifier.Revocations = RevocationList.Parse(Worker.PeerId + "  # lost laptop\n");
        var byPeer = _verifier.Check(grant, Worker.PeerId, GrantRole.Gateway);
        _verifier.Revocations = RevocationList.Empty;
        var restored = _verifier.Check(grant, Worker.PeerId, GrantRole.Gateway);

        Assert.That(bySerial, Does.Contain("serial 000000000000002a is revoked"));
        Assert.That(byPeer, Does.Contain("revoked"));
        Assert.That(restored, Is.Null);
    }

    [Test]
    public void Verifier_ChecksTheTextForm_AndNamesAMalformedOne()
    {
        Assert.That(_verifier.Check(Grant().ToText(), Worker.PeerId, GrantRole.Gateway, out var parsed), Is.Null);
        Assert.That(parsed, Is.Not.Null);
        Assert.That(_verifier.Check("not a grant!", Worker.PeerId, GrantRole.Gateway, out _), Does.Contain("malformed"));
        Assert.That(_verifier.Check("", Worker.PeerId, GrantRole.Gateway, out _), Does.Contain("no grant"));
    }

    [Test]
    public void RevocationList_RefusesALineThatIsNeitherSerialNorPeer_NamingTheLine()
    {
        var e = Assert.Throws<FormatException>(() => RevocationList.Parse("000000000000002a\nbogus\n"));
        Assert.That(e!.Message, Does.Contain("line 2"));
    }

    [Test]
    public void RevocationList_TextRoundTrips()
    {
        var list = new RevocationList([42UL, 7UL], [Worker.PeerId]);
        var again = RevocationList.Parse(list.ToText());
        Assert.That(again.ToText(), Is.EqualTo(list.ToText()));
        Assert.That(again.Count, Is.EqualTo(3));
    }

    [Test]
    public void ClusterId_RoundTripsThroughItsText_AndRefusesOtherText()
    {
        var text = Cluster.Id.ToString();

        Assert.That(text, Does.StartWith(ClusterId.Prefix));
        Assert.That(ClusterId.Parse(text), Is.EqualTo(Cluster.Id));
        Assert.That(ClusterId.TryParse(Worker.PeerId.ToString(), out _), Is.False);
        Assert.That(ClusterId.TryParse("p2pc", out _), Is.False);
        Assert.That(ClusterId.TryParse("p2pc0OIl", out _), Is.False, "not base58");
        Assert.Throws<FormatException>(() => ClusterId.Parse("p2pc" + new string('z', 20)));
    }

    [Test]
    public void ClusterKey_SavesOwnerOnly_AndLoadsTheSameCluster()
    {
        var path = Path.Combine(Path.GetTempPath(), "p2p-cluster-" + Guid.NewGuid().ToString("N"), "cluster.key");
        try
        {
            Cluster.Save(path);
            var loaded = ClusterKey.Load(path);

            Assert.That(loaded.Id, Is.EqualTo(Cluster.Id));
            if (!OperatingSystem.IsWindows())
                Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Test]
    public void Issue_RefusesAGrantThatExpiresBeforeItBegins()
    {
        Assert.Throws<ArgumentException>(() => Cluster.Issue(Worker.PeerId, GrantRole.Auth, Now, Now, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Cluster.Issue(Worker.PeerId, GrantRole.Auth, Now, TimeSpan.Zero, SystemRandomSource.Instance));
    }
}
