using P2PInference.Workers.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class PasswordPolicyTests
{
    private static readonly AuthOptions Options = AuthHarness.TestOptions();

    [TestCase("abcdefghijk1")]
    [TestCase("correct horse 42 battery")]
    [TestCase("пароль123456")]
    [TestCase("ÅÄÖåäö😀12345")]
    public void Check_Accepts_LongPasswordsWithLettersAndDigits(string password) =>
        Assert.That(PasswordPolicy.Check(password, Options), Is.Null);

    [TestCase(null, "required")]
    [TestCase("", "required")]
    [TestCase("abcdefghij1", "at least 12")]
    [TestCase("abcdefghijklmnop", "letters and digits")]
    [TestCase("1234567890123456", "letters and digits")]
    [TestCase("abcdefghijk1\u0001", "control")]
    public void Check_Refuses_WeakOrInvalidPasswords(string? password, string reason) =>
        Assert.That(PasswordPolicy.Check(password, Options), Does.Contain(reason));

    [Test]
    public void Check_Refuses_ALoneSurrogate()
    {
        // Built at run time: attribute metadata cannot hold a lone surrogate.
        var password = "abcdefghijk1" + (char)0xD800;
        Assert.That(PasswordPolicy.Check(password, Options), Does.Contain("Unicode"));
    }

    [Test]
    public void Check_Refuses_PasswordsOverTheMaximum()
    {
        Assert.That(PasswordPolicy.Check(new string('a', 1023) + "1", Options), Is.Null);
        Assert.That(PasswordPolicy.Check(new string('a', 1024) + "1", Options), Does.Contain("longer than 1024"));
        // Far over the maximum, yet cheap to build: fifty million characters cost a second of allocation and copying.
        Assert.That(PasswordPolicy.Check(new string('a', 1 << 20) + "1", Options), Does.Contain("longer"));
    }
}
