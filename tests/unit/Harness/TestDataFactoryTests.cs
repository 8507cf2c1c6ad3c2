using System.Text.RegularExpressions;
using P2PInference.TestKit.Harness;

namespace P2PInference.Tests.Unit.Harness;

public sealed partial class TestDataFactoryTests
{
    [Test]
    public void Factory_GivesTheSameSequence_ForTheSameSeed()
    {
        var a = new TestDataFactory(1234);
        var b = new TestDataFactory(1234);

        Assert.That(Draw(a), Is.EqualTo(Draw(b)));
    }

    [Test]
    public void Factory_GivesDifferentValues_ForDifferentSeeds()
    {
        var a = Draw(new TestDataFactory(1));
        var b = Draw(new TestDataFactory(2));

        Assert.That(a.Zip(b).Count(p => p.First == p.Second), Is.Zero, "no value repeats across seeds");
    }

    [Test]
    public void EveryKindOfValue_IsUniqueWithinAFactory()
    {
        var data = new TestDataFactory(42);
        const int n = 2000;

        Assert.Multiple(() =>
        {
            Assert.That(Enumerable.Range(0, n).Select(_ => data.Email()), Is.Unique);
            Assert.That(Enumerable.Range(0, n).Select(_ => data.User().Email), Is.Unique);
            Assert.That(Enumerable.Range(0, n).Select(_ => data.Password()), Is.Unique);
            Assert.That(Enumerable.Range(0, n).Select(_ => data.ApiKey()), Is.Unique);
            Assert.That(Enumerable.Range(0, n).Select(_ => data.RequestId()), Is.Unique);
            Assert.That(Enumerable.Range(0, n).Select(_ => data.Prompt()), Is.Unique);
            Assert.That(Enumerable.Range(0, n).Select(_ => data.Name("topic")), Is.Unique);
            Assert.That(Enumerable.Range(0, n).Select(_ => Convert.ToHexString(data.Payload(8))), Is.Unique);
        });
    }

    [Test]
    public void Emails_AreIsolatedPerSeed_OnTheReservedInvalidDomain()
    {
        var data = new TestDataFactory(777);

        var first = data.Email();
        var user = data.User();

        Assert.That(first, Is.EqualTo("user-1-777@test.invalid"));
        Assert.That(user.Email, Is.EqualTo("user-2-777@test.invalid"));
    }

    [Test]
    public void Passwords_MeetATypicalPolicy()
    {
        var data = new TestDataFactory(5);

        foreach (var password in Enumerable.Range(0, 200).Select(_ => data.Password()).Append(data.User().Password))
        {
            Assert.That(password, Has.Length.GreaterThanOrEqualTo(12));
            Assert.That(password, Does.Match("[A-Z]").And.Match("[a-z]").And.Match("[0-9]").And.Match("[^A-Za-z0-9]"), password);
        }
    }

    [Test]
    public void ApiKeys_HaveThePrefixAndAFixedLength()
    {
        var data = new TestDataFactory(9);

        var key = data.ApiKey();
        var custom = data.ApiKey("sk-test-");

        Assert.That(ApiKeyPattern().IsMatch(key), Is.True, key);
        Assert.That(custom, Does.StartWith("sk-test-").And.Length.EqualTo("sk-test-".Length + 40));
    }

    [Test]
    public void RequestIds_AreGuids()
    {
        var data = new TestDataFactory(3);

        Assert.That(Guid.TryParse(data.RequestId(), out _), Is.True);
    }

    [Test]
    public void Payload_HasTheRequestedSize_AndRandomContent()
    {
        var data = new TestDataFactory(11);

        var empty = data.Payload(0);
        var large = data.Payload(4096);

        Assert.That(empty, Is.Empty);
        Assert.That(large, Has.Length.EqualTo(4096));
        Assert.That(large.Skip(8).Distinct().Count(), Is.GreaterThan(200), "random bytes, not a fill pattern");
        Assert.That(() => data.Payload(-1), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void Factory_IsThreadSafe_AndStillUnique()
    {
        var data = new TestDataFactory(8);

        var emails = Enumerable.Range(0, 8).AsParallel().SelectMany(_ => Enumerable.Range(0, 500).Select(_ => data.Email())).ToArray();

        Assert.That(emails, Is.Unique);
        Assert.That(data.Count, Is.EqualTo(4000));
    }

    [Test]
    public void CreateRandom_GivesDifferentStreams_ThatReplayForTheSeed()
    {
        var a = new TestDataFactory(100);
        var b = new TestDataFactory(100);

        var first = a.CreateRandom().Next();
        var second = a.CreateRandom().Next();

        Assert.That(first, Is.Not.EqualTo(second));
        Assert.That(b.CreateRandom().Next(), Is.EqualTo(first));
    }

    private static List<string> Draw(TestDataFactory data) =>
    [
        data.Email(), data.Password(), data.ApiKey(), data.RequestId(), data.Prompt(), data.Name("t"),
        Convert.ToHexString(data.Payload(32)), data.User().ToString(),
    ];

    [GeneratedRegex("^p2pi_[0-9A-Za-z]{40}$")]
    private static partial Regex ApiKeyPattern();
}
