using P2PInference.Facilities.Dht;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Dht;

[TestFixture]
public sealed class KadIdTests
{
    private static KadId Id(params byte[] prefix)
    {
        var bytes = new byte[32];
        prefix.CopyTo(bytes, 0);
        return KadId.FromHash(bytes);
    }

    [Test]
    public void CommonPrefixLength_CountsLeadingEqualBits()
    {
        Assert.That(Id(0x80).CommonPrefixLength(Id(0x00)), Is.Zero);
        Assert.That(Id(0x01).CommonPrefixLength(Id(0x00)), Is.EqualTo(7));
        Assert.That(Id(0, 0, 0, 0, 0, 0, 0, 0, 0x40).CommonPrefixLength(Id()), Is.EqualTo(65));
        Assert.That(Id(7).CommonPrefixLength(Id(7)), Is.EqualTo(256));
    }

    [Test]
    public void CompareDistance_OrdersByXorNotByValue()
    {
        var target = Id(0b1000_0000);
        var near = Id(0b1000_0001); // xor 0x01
        var far = Id(0b0000_0000);  // xor 0x80

        Assert.That(target.CompareDistance(near, far), Is.LessThan(0));
        Assert.That(target.CompareDistance(far, near), Is.GreaterThan(0));
        Assert.That(target.CompareDistance(near, near), Is.Zero);
    }

    [Test]
    public void FromKey_IsSha256OfTheBytes()
    {
        var id = KadId.FromKey("abc"u8);
        Assert.That(id.ToString(), Is.EqualTo("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    }

    [Test]
    public void RandomWithCommonPrefix_SharesExactlyThatPrefix()
    {
        var random = TestSeed.CreateRandom();
        var self = KadId.Random(random);
        foreach (var cpl in new[] { 0, 1, 7, 63, 64, 100, 255 })
            Assert.That(self.CommonPrefixLength(self.RandomWithCommonPrefix(cpl, random)), Is.EqualTo(cpl));
    }
}
