using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Client;

namespace P2PInference.Tests.Unit.Client;

/// <summary>The profile file: what is saved comes back, only its owner can read it, a damaged one is a clear error.</summary>
public sealed class ClientProfileTests
{
    private string _directory = null!;

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("p2pinference-profile-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_directory, recursive: true);

    [Test]
    public async Task Profile_SavedAndLoaded_RoundTrips()
    {
        var path = Path.Combine(_directory, "nested", "profile.json");
        var profile = new ClientProfile
        {
            Bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA"],
            Email = "ann@example.com",
            Token = "tok",
            TokenExpiresAt = new DateTimeOffset(2030, 1, 2, 3, 4, 5, TimeSpan.Zero),
            ApiKey = "sk-1",
            ApiKeyId = "k1",
            DefaultModel = "builtin-tiny",
        };

        await profile.SaveAsync(path, CancellationToken.None);
        var loaded = await ClientProfile.LoadAsync(path, CancellationToken.None);

        Assert.That(loaded.Bootstrap, Is.EqualTo(profile.Bootstrap));
        Assert.That((loaded.Email, loaded.Token, loaded.TokenExpiresAt, loaded.ApiKey, loaded.ApiKeyId, loaded.DefaultModel),
            Is.EqualTo((profile.Email, profile.Token, profile.TokenExpiresAt, profile.ApiKey, profile.ApiKeyId, profile.DefaultModel)));
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!), Has.Length.EqualTo(1), "no temporary file left behind");
    }

    [Test]
    [Platform(Exclude = "Win", Reason = "Unix file modes")]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task Profile_IsReadableByItsOwnerOnly()
    {
        var path = Path.Combine(_directory, "dir", "profile.json");

        await new ClientProfile { Token = "secret" }.SaveAsync(path, CancellationToken.None);
        await new ClientProfile { Token = "secret2" }.SaveAsync(path, CancellationToken.None);

        Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        Assert.That(File.GetUnixFileMode(Path.GetDirectoryName(path)!), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute));
    }

    [Test]
    public async Task Load_MissingFile_GivesAnEmptyProfile()
    {
        var profile = await ClientProfile.LoadAsync(Path.Combine(_directory, "none.json"), CancellationToken.None);

        Assert.That(profile.Token, Is.Null);
        Assert.That(profile.Bootstrap, Is.Empty);
    }

    [TestCase("{ not json")]
    [TestCase("{\"bootstrap\": 5}")]
    [TestCase("[1,2,3]")]
    public async Task Load_DamagedFile_IsAClearError(string content)
    {
        var path = Path.Combine(_directory, "profile.json");
        await File.WriteAllTextAsync(path, content);

        Assert.That(async () => await ClientProfile.LoadAsync(path, CancellationToken.None),
            Throws.InstanceOf<InvalidDataException>().With.Message.Contain(path));
    }

    [Test]
    public async Task Load_OversizedFile_IsRefusedBeforeReading()
    {
        var path = Path.Combine(_directory, "profile.json");
        await using (var stream = File.Create(path)) stream.SetLength(ClientProfile.MaxFileBytes + 1);

        Assert.That(async () => await ClientProfile.LoadAsync(path, CancellationToken.None),
            Throws.InstanceOf<InvalidDataException>().With.Message.Contain("bytes"));
    }

    [Test]
    public void HasValidToken_IsFalse_OnceTheTokenExpired()
    {
        var time = new FakeTimeProvider();
        var profile = new ClientProfile { Token = "t", TokenExpiresAt = time.GetUtcNow().AddMinutes(5) };

        Assert.That(profile.HasValidToken(time), Is.True);
        time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(profile.HasValidToken(time), Is.False);
        Assert.That(new ClientProfile().HasValidToken(time), Is.False);
    }
}
