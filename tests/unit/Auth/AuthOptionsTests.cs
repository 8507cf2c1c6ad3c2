using P2PInference.Workers.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class AuthOptionsTests
{
    [Test]
    public void Defaults_AreValid_AndFollowTheIssue()
    {
        var options = new AuthOptions();
        Assert.DoesNotThrow(options.Validate);
        Assert.Multiple(() =>
        {
            Assert.That(options.PasswordIterations, Is.EqualTo(600_000));
            Assert.That(options.TokenLifetime, Is.EqualTo(TimeSpan.FromHours(24)));
            Assert.That(options.MinPasswordLength, Is.EqualTo(12));
            Assert.That(options.MaxPasswordLength, Is.EqualTo(1024));
            Assert.That(options.LoginThrottle.MaxFailures, Is.EqualTo(5));
            Assert.That(options.LoginThrottle.Window, Is.EqualTo(TimeSpan.FromMinutes(15)));
        });
    }

    private static IEnumerable<TestCaseData> BadSettings()
    {
        yield return new TestCaseData((Action<AuthOptions>)(o => o.PasswordIterations = 10), "PasswordIterations");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.PasswordIterations = int.MaxValue), "PasswordIterations");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.TokenLifetime = TimeSpan.Zero), "TokenLifetime");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.TokenLifetime = TimeSpan.FromDays(365)), "TokenLifetime");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.ClockSkew = TimeSpan.FromSeconds(-1)), "ClockSkew");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.MinPasswordLength = 4), "MinPasswordLength");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.MaxPasswordLength = 11), "MaxPasswordLength");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.LoginThrottle = null!), "LoginThrottle");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.LoginThrottle.MaxFailures = 0), "MaxFailures");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.LoginThrottle.Window = TimeSpan.Zero), "Window");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.LoginThrottle.MaxTrackedEmails = 0), "MaxTrackedEmails");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.DefaultQuota.RequestsPerMinute = 0), "RequestsPerMinute");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.DefaultQuota.Burst = 0), "Burst");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.Issuer = " "), "Issuer");
        yield return new TestCaseData((Action<AuthOptions>)(o => o.MaxApiKeysPerUser = 0), "MaxApiKeysPerUser");
    }

    [TestCaseSource(nameof(BadSettings))]
    public void Validate_NamesTheSetting_WhenOutOfRange(Action<AuthOptions> spoil, string setting)
    {
        var options = new AuthOptions();
        spoil(options);
        var error = Assert.Throws<ArgumentException>(options.Validate);
        Assert.That(error!.Message, Does.Contain(setting));
    }
}
