using P2PInference.Facilities.Encoding;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Encoding;

public sealed class Base32Tests
{
    // RFC 4648 §10 vectors, lower case and without padding (multibase 'b').
    [TestCase("", "")]
    [TestCase("f", "my")]
    [TestCase("fo", "mzxq")]
    [TestCase("foo", "mzxw6")]
    [TestCase("foob", "mzxw6yq")]
    [TestCase("fooba", "mzxw6ytb")]
    [TestCase("foobar", "mzxw6ytboi")]
    public void Encode_Decode_MatchRfc4648(string plain, string text)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(plain);
        Assert.That(Base32.Encode(bytes), Is.EqualTo(text));
        Assert.That(Base32.Decode(text), Is.EqualTo(bytes));
        Assert.That(Base32.Decode(text.ToUpperInvariant()), Is.EqualTo(bytes));
    }

    [Test]
    public void Decode_RoundTripsRandomBytes_IncludingLeadingZeros()
    {
        var random = TestSeed.CreateRandom();
        for (var i = 0; i < 300; i++)
        {
            var bytes = new byte[random.Next(0, 64)];
            random.NextBytes(bytes);
            var zeros = Math.Min(random.Next(0, 4), bytes.Length);
            bytes.AsSpan(0, zeros).Clear();
            Assert.That(Base32.Decode(Base32.Encode(bytes)), Is.EqualTo(bytes));
        }
    }

    [TestCase("my1")]
    [TestCase("mzxw6=")]
    [TestCase("m z")]
    [TestCase("mz8")]
    public void Decode_RejectsCharactersOutsideTheAlphabet(string text)
    {
        Assert.That(() => Base32.Decode(text), Throws.TypeOf<FormatException>().With.Message.Contains("not a base32 character"));
    }

    [TestCase("m")]
    [TestCase("mzx")]
    [TestCase("mzxw6y")]
    public void Decode_RejectsLengthsNoEncoderProduces(string text)
    {
        Assert.That(() => Base32.Decode(text), Throws.TypeOf<FormatException>().With.Message.Contains("length"));
    }

    [TestCase("mz")]
    [TestCase("mzxr")]
    public void Decode_RejectsNonZeroTrailingBits(string text)
    {
        Assert.That(() => Base32.Decode(text), Throws.TypeOf<FormatException>().With.Message.Contains("trailing bits"));
    }

    [Test]
    public void Decode_RejectsOverlongText_BeforeDecoding()
    {
        Assert.That(() => Base32.Decode(new string('a', Base32.MaxEncodedLength + 8)), Throws.TypeOf<FormatException>());
    }
}
