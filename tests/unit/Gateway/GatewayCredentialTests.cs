using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Gateway;

namespace P2PInference.Tests.Unit.Gateway;

public sealed class GatewayCredentialTests
{
    [TestCase("ApiKey pk_1", CredentialKind.ApiKey, "pk_1")]
    [TestCase("apikey pk_1", CredentialKind.ApiKey, "pk_1")]
    [TestCase("Bearer a.b.c", CredentialKind.Bearer, "a.b.c")]
    [TestCase("BEARER a.b.c", CredentialKind.Bearer, "a.b.c")]
    public void Parse_ReadsSchemeAndValue(string header, CredentialKind kind, string value) =>
        Assert.That(GatewayCredential.Parse(header), Is.EqualTo(new GatewayCredential(kind, value)));

    [TestCase("")]
    [TestCase("ApiKey")]
    [TestCase("ApiKey ")]
    [TestCase(" ApiKey pk")]
    [TestCase("Basic dXNlcg==")]
    [TestCase("ApiKey pk 1")]
    [TestCase("ApiKey pk\u00e9")]
    [TestCase("Bearer a\tb")]
    public void Parse_RefusesMalformedHeaders_AsUnauthenticated(string header) =>
        Assert.That(() => GatewayCredential.Parse(header),
            Throws.InstanceOf<RpcException>().With.Property(nameof(RpcException.Code)).EqualTo(RpcStatusCode.Unauthenticated));

    [Test]
    public void Parse_RefusesAnOverlongCredential()
    {
        var header = "Bearer " + new string('a', GatewayOptions.MaxCredentialLength + 1);

        Assert.That(() => GatewayCredential.Parse(header), Throws.InstanceOf<RpcException>().With.Message.Contains("longer"));
    }

    [Test]
    public void FromMetadata_WithoutTheAuthorizationEntry_SaysWhatToSend()
    {
        var error = Assert.Throws<RpcException>(() => GatewayCredential.FromMetadata(new Dictionary<string, string>()));

        Assert.That(error!.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(error.Message, Does.Contain(WorkerMethods.AuthorizationMetadata).And.Contain("ApiKey <key>"));
    }

    [Test]
    public void ToString_ShowsNoSecret() =>
        Assert.That(new GatewayCredential(CredentialKind.ApiKey, "pk_supersecret_abcd").ToString(), Does.Not.Contain("supersecret"));
}
