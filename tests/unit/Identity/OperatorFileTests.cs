using P2PInference.Facilities.Identity;

namespace P2PInference.Tests.Unit.Identity;

public sealed class OperatorFileTests
{
    private string _directory = "";

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Path.Combine(Path.GetTempPath(), "p2p-operatorfile-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_directory);
    }

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_directory, recursive: true);

    private string Write(byte[] content)
    {
        var path = Path.Combine(_directory, "file");
        File.WriteAllBytes(path, content);
        return path;
    }

    [Test]
    public void ReadAllBytes_AtTheCap_ReturnsTheWholeFile()
    {
        var path = Write([1, 2, 3, 4]);
        Assert.That(OperatorFile.ReadAllBytes(path, 4, "grant file"), Is.EqualTo(new byte[] { 1, 2, 3, 4 }));
    }

    [Test]
    public void ReadAllBytes_OneByteOverTheCap_NamesTheFileAndTheCap()
    {
        var path = Write(new byte[5]);
        var error = Assert.Throws<InvalidDataException>(() => OperatorFile.ReadAllBytes(path, 4, "grant file"));
        Assert.That(error!.Message, Is.EqualTo($"grant file '{path}' is 5 bytes, more than 4"));
    }

    [Test]
    public void ReadAllBytes_Missing_IsFileNotFoundNamingWhatWasExpected()
    {
        var path = Path.Combine(_directory, "nope");
        var error = Assert.Throws<FileNotFoundException>(() => OperatorFile.ReadAllBytes(path, 4, "revocation list"));
        Assert.That(error!.Message, Is.EqualTo($"revocation list '{path}' does not exist"));
    }

    [Test]
    public void ReadAllBytes_Empty_IsEmpty() =>
        Assert.That(OperatorFile.ReadAllBytes(Write([]), 4, "key file"), Is.Empty);

    [Test]
    public void ReadAllText_SkipsAByteOrderMark() =>
        Assert.That(OperatorFile.ReadAllText(Write([0xEF, 0xBB, 0xBF, (byte)'h', (byte)'i']), 16, "grant file"), Is.EqualTo("hi"));

    [Test]
    public void ReadAllText_ADirectory_IsAnIoErrorNotACrash() =>
        Assert.Throws<FileNotFoundException>(() => OperatorFile.ReadAllText(_directory, 16, "grant file"));
}
