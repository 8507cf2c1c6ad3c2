using System.Buffers.Binary;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;

namespace P2PInference.Tests.Unit.Trust;

/// <summary>A grant arrives from the network (the grant exchange, RPC metadata): its parser takes any bytes without failing other than with FormatException.</summary>
[TestFixture]
public sealed class RoleGrantParserTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 5, 12, 0, 0, TimeSpan.Zero);
    private static readonly ClusterKey Cluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)1, 32).ToArray()));
    private static readonly byte[] Valid = Cluster.Issue(KeyPair.FromSeed(new byte[32]).PeerId, GrantRole.Auth, Now, Now + TimeSpan.FromDays(1), 9).ToBytes();

    [Test]
    public void EveryTruncation_IsRefused()
    {
        for (var length = 0; length < Valid.Length; length++)
            Assert.Throws<FormatException>(() => RoleGrant.Decode(Valid.AsSpan(0, length)), $"truncated to {length} bytes");
    }

    [Test]
    public void TrailingBytes_AndOversizedInput_AreRefused()
    {
        Assert.Throws<FormatException>(() => RoleGrant.Decode([.. Valid, 0]));
        Assert.Throws<FormatException>(() => RoleGrant.Decode(new byte[RoleGrant.MaxEncodedLength + 1]));
        Assert.Throws<FormatException>(() => RoleGrant.Decode(new byte[1 << 20]));
        Assert.Throws<FormatException>(() => RoleGrant.FromText(new string('A', 100_000)));
    }

    [TestCase(0, (byte)2, "version")]
    [TestCase(33, (byte)0, "role")]
    [TestCase(33, (byte)9, "role")]
    [TestCase(34, (byte)0, "length")]
    [TestCase(34, (byte)200, "length")]
    public void AFieldOutOfRange_IsRefused_NamingIt(int offset, byte value, string named)
    {
        var bytes = (byte[])Valid.Clone();
        bytes[offset] = value;

        var e = Assert.Throws<FormatException>(() => RoleGrant.Decode(bytes));
        Assert.That(e!.Message, Does.Contain(named));
    }

    [Test]
    public void TimesOutOfOrderOrOutOfRange_AreRefused()
    {
        var timesAt = Valid.Length - RoleGrant.SignatureSize - 24;
        var swapped = (byte[])Valid.Clone();
        BinaryPrimitives.WriteInt64BigEndian(swapped.AsSpan(timesAt + 8), BinaryPrimitives.ReadInt64BigEndian(Valid.AsSpan(timesAt)) - 1);
        var huge = (byte[])Valid.Clone();
        BinaryPrimitives.WriteInt64BigEndian(huge.AsSpan(timesAt + 8), long.MaxValue);

        Assert.Throws<FormatException>(() => RoleGrant.Decode(swapped));
        Assert.Throws<FormatException>(() => RoleGrant.Decode(huge));
    }

    // 2,000 inputs, not 20,000: about four in five mutated grants decode and each costs an Ed25519
    // verification, which made the test take seconds. A thousand mutations of 1-3 bytes still change
    // every one of the grant's bytes a dozen times over, and a thousand random inputs span every length
    // from empty to past the maximum; truncation and oversize have their own exhaustive tests above.
    [Test]
    public void RandomBytes_AndRandomMutations_NeverThrowAnythingButFormatException()
    {
        var random = new Random(20261205);
        for (var i = 0; i < 2_000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[random.Next(0, RoleGrant.MaxEncodedLength + 8)];
                random.NextBytes(input);
            }
            else
            {
                input = (byte[])Valid.Clone();
                for (var flips = random.Next(1, 4); flips > 0; flips--) input[random.Next(input.Length)] = (byte)random.Next(256);
            }
            try
            {
                var grant = RoleGrant.Decode(input);
                // Whatever decodes is still only trusted when its signature verifies: the check must not throw,
                // and every byte is signed, so only an unchanged grant verifies.
                Assert.That(grant.HasValidSignature(), Is.EqualTo(input.AsSpan().SequenceEqual(Valid)), Convert.ToHexString(input));
            }
            catch (FormatException)
            {
            }
        }
        Assert.Pass("2,000 random and mutated inputs");
    }
}
