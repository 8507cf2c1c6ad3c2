using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Tests.Unit.Yamux;

[TestFixture]
public sealed class YamuxHeaderTests
{
    [Test]
    public void Header_EncodesBigEndianFields_InSpecOrder()
    {
        var bytes = new byte[YamuxHeader.Size];
        new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Syn | YamuxFlags.Fin, 0x01020304, 0xA0B0C0D0).Write(bytes);

        Assert.That(bytes, Is.EqualTo(new byte[] { 0, 1, 0, 5, 1, 2, 3, 4, 0xA0, 0xB0, 0xC0, 0xD0 }));
        Assert.That(YamuxHeader.Read(bytes), Is.EqualTo(new YamuxHeader(0, YamuxFrameType.WindowUpdate, YamuxFlags.Syn | YamuxFlags.Fin, 0x01020304, 0xA0B0C0D0)));
    }

    [Test]
    public void Header_Write_Throws_WhenTheDestinationIsShorterThanTwelveBytes()
    {
        var header = new YamuxHeader(YamuxFrameType.Data, YamuxFlags.Syn, 1, 0);

        Assert.That(() => header.Write(new byte[YamuxHeader.Size - 1]), Throws.ArgumentException);
    }

    [Test]
    public void Header_Read_Throws_WhenShorterThanTwelveBytes()
    {
        Assert.That(() => YamuxHeader.Read(new byte[11]), Throws.ArgumentException);
    }

    [Test]
    public void Session_RejectsOptions_WithWindowBelowSpecDefault()
    {
        using var stream = new MemoryStream();
        Assert.That(() => new YamuxSession(stream, true, new YamuxOptions { InitialWindowSize = 1024 }), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => new YamuxSession(stream, true, new YamuxOptions { MaxStreamWindowSize = 1024 }), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    private static IEnumerable<TestCaseData> GarbageOptions()
    {
        yield return new TestCaseData(new YamuxOptions { MaxInboundStreams = -1 }, nameof(YamuxOptions.MaxInboundStreams));
        yield return new TestCaseData(new YamuxOptions { MaxAcceptBacklog = -1 }, nameof(YamuxOptions.MaxAcceptBacklog));
        yield return new TestCaseData(new YamuxOptions { KeepAliveInterval = TimeSpan.Zero }, nameof(YamuxOptions.KeepAliveInterval));
        yield return new TestCaseData(new YamuxOptions { KeepAliveTimeout = TimeSpan.FromSeconds(-1) }, nameof(YamuxOptions.KeepAliveTimeout));
    }

    [TestCaseSource(nameof(GarbageOptions))]
    public void Session_RejectsGarbageOptions_NamingTheSetting(YamuxOptions options, string setting)
    {
        using var stream = new MemoryStream();
        Assert.That(() => new YamuxSession(stream, true, options),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property(nameof(ArgumentException.ParamName)).EqualTo(setting));
    }
}
