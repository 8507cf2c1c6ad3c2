using P2PInference.Workers.Auth;

namespace P2PInference.Tests.Unit.Auth;

[TestFixture]
public sealed class PasswordHasherTests
{
    private readonly PasswordHasher _hasher = new(1000);

    [Test]
    public void Verify_Accepts_TheHashedPassword_AndRefusesOthers()
    {
        var hash = _hasher.Hash("correct horse 42");
        Assert.Multiple(() =>
        {
            Assert.That(PasswordHasher.Verify("correct horse 42", hash), Is.True);
            Assert.That(PasswordHasher.Verify("correct horse 43", hash), Is.False);
            Assert.That(PasswordHasher.Verify("Correct horse 42", hash), Is.False);
            Assert.That(PasswordHasher.Verify(string.Empty, hash), Is.False);
        });
    }

    [Test]
    public void Hash_UsesAFreshSalt_AndRecordsTheIterations()
    {
        var first = _hasher.Hash("same password 1");
        var second = _hasher.Hash("same password 1");
        Assert.That(first, Is.Not.EqualTo(second));
        Assert.That(first, Does.StartWith("pbkdf2-sha256$1000$"));
        Assert.That(first, Does.Not.Contain("same password"));
    }

    [Test]
    public void Verify_WorksAcrossIterationChanges_AndNeedsRehashSaysSo()
    {
        var old = new PasswordHasher(1000).Hash("correct horse 42");
        var current = new PasswordHasher(2000);
        Assert.That(PasswordHasher.Verify("correct horse 42", old), Is.True);
        Assert.That(current.NeedsRehash(old), Is.True);
        Assert.That(current.NeedsRehash(current.Hash("correct horse 42")), Is.False);
    }

    [Test]
    public void Verify_MatchesTheRfc2898Reference()
    {
        // Independent of our encoding: the stored hash is exactly PBKDF2-HMAC-SHA256(password, salt, iterations, 32).
        var encoded = _hasher.Hash("correct horse 42");
        var parts = encoded.Split('$');
        var expected = System.Security.Cryptography.Rfc2898DeriveBytes.Pbkdf2(
            "correct horse 42"u8, Convert.FromBase64String(parts[2]), 1000, System.Security.Cryptography.HashAlgorithmName.SHA256, 32);
        Assert.That(Convert.FromBase64String(parts[3]), Is.EqualTo(expected));
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("garbage")]
    [TestCase("pbkdf2-sha256$1000$$")]
    [TestCase("pbkdf2-sha256$-5$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")]
    [TestCase("pbkdf2-sha256$999999999999$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")]
    [TestCase("pbkdf2-sha1$1000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")]
    [TestCase("pbkdf2-sha256$1000$not base64!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")]
    [TestCase("pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$AAAA")]
    public void Verify_IsFalse_ForAnEncodingThatIsNotOurs(string? encoded) =>
        Assert.That(PasswordHasher.Verify("correct horse 42", encoded!), Is.False);
}
