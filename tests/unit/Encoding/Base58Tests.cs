using P2PInference.Facilities.Encoding;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Encoding;

public sealed class Base58Tests
{
    // Vectors from the base58btc draft (draft-msporny-base58) and multibase's test suite.
    [TestCase("", "")]
    [TestCase("61", "2g")]
    [TestCase("626262", "a3gV")]
    [TestCase("636363", "aPEr")]
    [TestCase("00", "1")]
    [TestCase("0000", "11")]
    [TestCase("00000000000000000000", "1111111111")]
    [TestCase("0000287fb4cd", "11233QC4")]
    [TestCase("48656c6c6f20576f726c6421", "2NEpo7TZRRrLZSi2U")]
    [TestCase("516b6fcd0f", "ABnLTmg")]
    [TestCase("00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L")]
    public void Encode_Decode_MatchKnownVectors(string hex, string text)
    {
        var bytes = Convert.FromHexString(hex);
        Assert.That(Base58.Encode(bytes), Is.EqualTo(text));
        Assert.That(Base58.Decode(text), Is.EqualTo(bytes));
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
            Assert.That(Base58.Decode(Base58.Encode(bytes)), Is.EqualTo(bytes));
        }
    }

    [TestCase(190, 0)]
    [TestCase(300, 3)]
    [TestCase(400, 0)]
    [TestCase(10, 600)]
    public void Encode_LongInputs_MatchTheBigIntegerDefinition(int length, int leadingZeros)
    {
        var random = TestSeed.CreateRandom();
        var bytes = new byte[leadingZeros + length];
        random.NextBytes(bytes.AsSpan(leadingZeros));
        bytes[leadingZeros] |= 1;

        var value = new System.Numerics.BigInteger(bytes, isUnsigned: true, isBigEndian: true);
        var expected = new System.Text.StringBuilder();
        while (value > 0)
        {
            value = System.Numerics.BigInteger.DivRem(value, 58, out var digit);
            expected.Insert(0, "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"[(int)digit]);
        }
        expected.Insert(0, new string('1', leadingZeros));

        Assert.That(Base58.Encode(bytes), Is.EqualTo(expected.ToString()));
    }

    [TestCase("0")]
    [TestCase("O")]
    [TestCase("I")]
    [TestCase("l")]
    [TestCase("abc+")]
    [TestCase("12 3")]
    [TestCase("é")]
    public void Decode_RejectsCharactersOutsideTheAlphabet(string text)
    {
        Assert.That(() => Base58.Decode(text), Throws.TypeOf<FormatException>().With.Message.Contains("not a base58 character"));
    }

    [Test]
    public void Decode_RejectsOverlongText_BeforeDecoding()
    {
        Assert.That(() => Base58.Decode(new string('z', Base58.MaxEncodedLength + 1)), Throws.TypeOf<FormatException>());
    }
}
