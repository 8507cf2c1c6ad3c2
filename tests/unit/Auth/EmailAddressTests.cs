using P2PInference.Workers.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class EmailAddressTests
{
    [TestCase("alice@example.com", "alice@example.com")]
    [TestCase("  Alice.Smith+tag@Mail.Example.COM ", "alice.smith+tag@mail.example.com")]
    [TestCase("o'brien@example.co.uk", "o'brien@example.co.uk")]
    [TestCase("a@b-c.io", "a@b-c.io")]
    public void TryNormalize_AcceptsAndLowerCases_PlainAddresses(string input, string expected)
    {
        Assert.That(EmailAddress.TryNormalize(input, out var normalized, out var error), Is.True, error);
        Assert.That(normalized, Is.EqualTo(expected));
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("   ")]
    [TestCase("plain")]
    [TestCase("@example.com")]
    [TestCase("alice@")]
    [TestCase("alice@@example.com")]
    [TestCase("a@b@example.com")]
    [TestCase("alice@localhost")]
    [TestCase("alice@example")]
    [TestCase(".alice@example.com")]
    [TestCase("alice.@example.com")]
    [TestCase("al..ice@example.com")]
    [TestCase("alice@-example.com")]
    [TestCase("alice@example-.com")]
    [TestCase("alice@example..com")]
    [TestCase("alice@192.168.0.1")]
    [TestCase("alice@[192.168.0.1]")]
    [TestCase("\"alice\"@example.com")]
    [TestCase("Alice <alice@example.com>")]
    [TestCase("ali ce@example.com")]
    [TestCase("alice@exa mple.com")]
    [TestCase("alice@exämple.com")]
    [TestCase("jösé@example.com")]
    [TestCase("alice\0@example.com")]
    [TestCase("alice@exa\nmple.com")]
    public void TryNormalize_Refuses_MalformedAddresses(string? input)
    {
        Assert.That(EmailAddress.TryNormalize(input, out _, out var error), Is.False);
        Assert.That(error, Is.Not.Empty);
    }

    [Test]
    public void TryNormalize_Refuses_TooLongParts()
    {
        Assert.That(EmailAddress.TryNormalize(new string('a', 65) + "@example.com", out _, out _), Is.False, "local part over 64");
        Assert.That(EmailAddress.TryNormalize("a@" + new string('b', 64) + ".com", out _, out _), Is.False, "label over 63");
        var longest = new string('a', 64) + "@" + string.Join('.', Enumerable.Repeat(new string('b', 60), 3)) + "." + new string('c', 5);
        Assert.That(longest, Has.Length.LessThanOrEqualTo(AuthOptions.MaxEmailLength));
        Assert.That(EmailAddress.TryNormalize(longest, out _, out var error), Is.True, error);
        var tooLong = new string('a', 64) + "@" + string.Join('.', Enumerable.Repeat(new string('b', 60), 4)) + ".com";
        Assert.That(EmailAddress.TryNormalize(tooLong, out _, out error), Is.False);
        Assert.That(error, Does.Contain("254"));
    }

    [Test]
    public void TryNormalize_RefusesAtOnce_AHugeInput()
    {
        Assert.That(EmailAddress.TryNormalize(new string('a', 10_000_000) + "@example.com", out _, out var error), Is.False);
        Assert.That(error, Does.Contain("longer"));
    }
}
