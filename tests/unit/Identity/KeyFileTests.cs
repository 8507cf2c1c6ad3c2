using System.Runtime.Versioning;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Identity;

public sealed class KeyFileTests
{
    private string _directory = "";

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Path.Combine(Path.GetTempPath(), "p2p-keyfile-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_directory);
    }

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_directory, recursive: true);

    private string KeyPath => Path.Combine(_directory, "node", "identity.key");

    [Test]
    public void SaveLoad_KeepsThePeerId()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        KeyFile.Save(KeyPath, key);
        var loaded = KeyFile.Load(KeyPath);

        Assert.That(loaded.PeerId, Is.EqualTo(key.PeerId));
        Assert.That(key.PublicKey.Verify("x"u8, loaded.Sign("x"u8)), Is.True);
    }

    [Test]
    public void Save_WritesTheLibp2pPrivateKeyProtobuf()
    {
        var key = KeyPair.ImportPrivateKey(Convert.FromHexString(SpecVectors.Ed25519PrivateKeyHex));
        KeyFile.Save(KeyPath, key);
        Assert.That(Convert.ToHexStringLower(File.ReadAllBytes(KeyPath)), Is.EqualTo(SpecVectors.Ed25519PrivateKeyHex));
        Assert.That(File.Exists(KeyPath + ".tmp"), Is.False);
    }

    [Test]
    public void Save_ReplacesAnExistingKey()
    {
        var random = TestSeed.CreateRandom();
        KeyFile.Save(KeyPath, KeyPair.FromRandom(random));
        var second = KeyPair.FromRandom(random);
        KeyFile.Save(KeyPath, second);
        Assert.That(KeyFile.Load(KeyPath).PeerId, Is.EqualTo(second.PeerId));
    }

    [Test]
    [Platform(Exclude = "Win")]
    [UnsupportedOSPlatform("windows")]
    public void Save_MakesTheFileOwnerOnly_OnUnix()
    {
        KeyFile.Save(KeyPath, KeyPair.FromRandom(TestSeed.CreateRandom()));
        Assert.That(File.GetUnixFileMode(KeyPath), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
    }

    [Test]
    [Platform(Exclude = "Win")]
    [UnsupportedOSPlatform("windows")]
    public void Save_StaysOwnerOnly_WhenAStaleWorldReadableTempFileExists()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(KeyPath)!);
        File.WriteAllText(KeyPath + ".tmp", "left over by a crash");
        File.SetUnixFileMode(KeyPath + ".tmp", (UnixFileMode)0b110_100_100);

        KeyFile.Save(KeyPath, KeyPair.FromRandom(TestSeed.CreateRandom()));

        Assert.That(File.GetUnixFileMode(KeyPath), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
    }

    [Test]
    public void Load_Throws_FileNotFound_WhenMissing()
    {
        Assert.That(() => KeyFile.Load(KeyPath),
            Throws.TypeOf<FileNotFoundException>().With.Property(nameof(FileNotFoundException.FileName)).EqualTo(KeyPath));
    }

    [TestCase(new byte[0])]
    [TestCase(new byte[] { 0x08, 0x01, 0x12, 0x40, 0x01 })]
    [TestCase(new byte[] { 0x68, 0x65, 0x6c, 0x6c, 0x6f })]
    public void Load_Throws_InvalidData_NamingTheFile_WhenCorrupt(byte[] content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(KeyPath)!);
        File.WriteAllBytes(KeyPath, content);
        Assert.That(() => KeyFile.Load(KeyPath),
            Throws.TypeOf<InvalidDataException>().With.Message.Contains(KeyPath).And.Message.Contains("not a libp2p Ed25519 private key"));
    }

    [Test]
    public void Load_Throws_InvalidData_WhenOneByteOfTheKeyIsFlipped()
    {
        KeyFile.Save(KeyPath, KeyPair.FromRandom(TestSeed.CreateRandom()));
        var bytes = File.ReadAllBytes(KeyPath);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(KeyPath, bytes);
        Assert.That(() => KeyFile.Load(KeyPath), Throws.TypeOf<InvalidDataException>().With.Message.Contains("does not match"));
    }

    [Test]
    public void Load_Throws_InvalidData_WhenTheFileIsHuge()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(KeyPath)!);
        File.WriteAllBytes(KeyPath, new byte[1 << 20]);
        Assert.That(() => KeyFile.Load(KeyPath), Throws.TypeOf<InvalidDataException>().With.Message.Contains("bytes"));
    }

    [Test]
    public void LoadOrCreate_CreatesOnce_ThenKeepsThePeerId()
    {
        var first = KeyFile.LoadOrCreate(KeyPath);
        var second = KeyFile.LoadOrCreate(KeyPath);
        Assert.That(second.PeerId, Is.EqualTo(first.PeerId));
    }
}
