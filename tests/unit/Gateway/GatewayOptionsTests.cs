using P2PInference.Workers.Gateway;

namespace P2PInference.Tests.Unit.Gateway;

public sealed class GatewayOptionsTests
{
    [Test]
    public void Defaults_AreValid() => Assert.That(() => new GatewayOptions().Validate(), Throws.Nothing);

    private static IEnumerable<TestCaseData> BadOptions()
    {
        yield return new TestCaseData(new GatewayOptions { CredentialCacheTtl = TimeSpan.FromSeconds(-1) }, "CredentialCacheTtl");
        yield return new TestCaseData(new GatewayOptions { NegativeCredentialCacheTtl = TimeSpan.FromHours(1) }, "NegativeCredentialCacheTtl");
        yield return new TestCaseData(new GatewayOptions { CredentialCacheCapacity = 0 }, "CredentialCacheCapacity");
        yield return new TestCaseData(new GatewayOptions { DefaultRateLimit = new(0, 5) }, "DefaultRateLimit");
        yield return new TestCaseData(new GatewayOptions { DefaultRateLimit = new(5, 0) }, "DefaultRateLimit");
        yield return new TestCaseData(new GatewayOptions { RefusedCredentialLimit = new(0, 5) }, "RefusedCredentialLimit");
        yield return new TestCaseData(new GatewayOptions { RateLimiterCapacity = 0 }, "RateLimiterCapacity");
        yield return new TestCaseData(new GatewayOptions { MaxPromptLength = 0 }, "MaxPromptLength");
        yield return new TestCaseData(new GatewayOptions { DefaultModel = "no spaces please" }, "DefaultModel");
        yield return new TestCaseData(new GatewayOptions { MaxTokensCap = 0 }, "MaxTokensCap");
        yield return new TestCaseData(new GatewayOptions { ProcessorAttempts = 0 }, "ProcessorAttempts");
        yield return new TestCaseData(new GatewayOptions { ProcessorCacheTtl = TimeSpan.FromDays(1) }, "ProcessorCacheTtl");
        yield return new TestCaseData(new GatewayOptions { ModelsCacheTtl = TimeSpan.FromSeconds(-1) }, "ModelsCacheTtl");
        yield return new TestCaseData(new GatewayOptions { BackendTimeout = TimeSpan.Zero }, "BackendTimeout");
        yield return new TestCaseData(new GatewayOptions { MaxAccountRequestBytes = 10 }, "MaxAccountRequestBytes");
    }

    [TestCaseSource(nameof(BadOptions))]
    public void Validate_NamesTheSettingOutOfRange(GatewayOptions options, string setting)
    {
        Assert.That(options.Validate, Throws.ArgumentException.With.Message.Contains("Gateway:" + setting));
        Assert.That(() => new GatewayWorker(options), Throws.ArgumentException, "the worker refuses to start with it");
    }
}
