using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// Logging out and "revoke all tokens" through the real workers: the gateway the logout went through
/// refuses the token at once, another gateway within its credential cache period, and other users
/// are served throughout.
/// </summary>
[TestFixture]
public sealed class TokenRevocationTests
{
    private static readonly TimeSpan CachePeriod = new GatewayOptions().CredentialCacheTtl;

    [Test]
    public void Logout_RefusesTheToken_AtOnceThroughItsGateway_AndWithinTheCachePeriodThroughAnother() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Gateways = 2 }, CancellationToken.None);
        var (healthy, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var token = await LoggedInTokenAsync(network);
        var rpc = network.Cluster[WorkerCluster.ClientNode].Get<RpcNode>();
        var first = network.Gateway.PeerId;
        var second = network.Cluster[WorkerCluster.GatewayName(2)].PeerId;
        // Both gateways have accepted the token, so both hold a cached verdict.
        Assert.That((await InferAsync(rpc, first, token, network)).Text, Is.Not.Empty);
        Assert.That((await InferAsync(rpc, second, token, network)).Text, Is.Not.Empty);

        var logout = await rpc.RequestAsync(first, WorkerMethods.Gateway.Logout, new LogoutRequest { Token = token }, LogoutResponse.Parser,
            null, CancellationToken.None);
        var loggedOutAt = sim.Clock.GetUtcNow();

        var refusedAtOnce = await WorkerCluster.FailureOfAsync(() => InferAsync(rpc, first, token, network));
        Assert.That(refusedAtOnce.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(refusedAtOnce.Message, Does.Contain("revoked"));
        Assert.That(sim.Clock.GetUtcNow() - loggedOutAt, Is.LessThan(TimeSpan.FromSeconds(1)), "refused at once, without waiting out a cache");

        // The other gateway's cached verdict lasts at most one cache period; the healthy client is served all along.
        RpcException? refusedLater = null;
        while (refusedLater is null)
        {
            Assert.That((await healthy.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 3), CancellationToken.None)).Text, Is.Not.Empty);
            try
            {
                await InferAsync(rpc, second, token, network);
                Assert.That(sim.Clock.GetUtcNow() - loggedOutAt, Is.LessThanOrEqualTo(CachePeriod), "the second gateway served the token past its cache period");
                await network.AdvanceAsync(TimeSpan.FromSeconds(5));
            }
            catch (RpcException e)
            {
                refusedLater = e;
            }
        }

        Assert.That(logout.UserId, Is.Not.Empty);
        Assert.That(refusedLater.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(sim.Clock.GetUtcNow() - loggedOutAt, Is.LessThanOrEqualTo(CachePeriod + TimeSpan.FromSeconds(5)));
        Assert.That((await healthy.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 4), CancellationToken.None)).Text, Is.Not.Empty);
    }, WorkerCluster.Simulation());

    [Test]
    public void RevokeAllTokens_ThroughTheClient_RefusesEveryEarlierToken_AndANewLoginWorks() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var user = network.Data.User();
        var laptop = network.NewClient();
        await laptop.RegisterAsync(user.Email, user.Password, CancellationToken.None);
        await laptop.LoginAsync(user.Email, user.Password, CancellationToken.None);
        var phone = network.NewClient();
        await phone.LoginAsync(user.Email, user.Password, CancellationToken.None);
        var phoneToken = phone.Token!;
        var key = await phone.CreateApiKeyAsync("server", CancellationToken.None);
        var rpc = network.Cluster[WorkerCluster.ClientNode].Get<RpcNode>();
        Assert.That((await InferAsync(rpc, network.Gateway.PeerId, phoneToken, network)).Text, Is.Not.Empty);

        await laptop.RevokeAllTokensAsync(CancellationToken.None);

        Assert.That(laptop.Token, Is.Null, "the client forgets the revoked token");
        var listed = await WorkerCluster.FailureOfAsync(() => phone.ListApiKeysAsync(CancellationToken.None));
        Assert.That(listed.Code, Is.EqualTo(RpcStatusCode.Unauthenticated), "Auth refuses the phone's token at once");
        var inferred = await WorkerCluster.FailureOfAsync(() => InferAsync(rpc, network.Gateway.PeerId, phoneToken, network));
        Assert.That(inferred.Code, Is.EqualTo(RpcStatusCode.Unauthenticated), "the gateway the revocation went through dropped the user's cached tokens");
        var byKey = network.NewClient(new P2PInference.Workers.Client.ClientOptions { ApiKey = key.ApiKey });
        Assert.That((await byKey.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None)).Text, Is.Not.Empty,
            "API keys are not login tokens");

        await laptop.LoginAsync(user.Email, user.Password, CancellationToken.None);
        Assert.That(await laptop.ListApiKeysAsync(CancellationToken.None), Has.Count.EqualTo(1), "a login after the revocation works");
    }, WorkerCluster.Simulation());

    private static async Task<string> LoggedInTokenAsync(WorkerCluster network)
    {
        var client = network.NewClient();
        var user = network.Data.User();
        await client.RegisterAsync(user.Email, user.Password, CancellationToken.None);
        return (await client.LoginAsync(user.Email, user.Password, CancellationToken.None)).Token;
    }

    /// <summary>An inference through one chosen gateway, authenticated by a login token.</summary>
    private static Task<InferResponse> InferAsync(RpcNode rpc, PeerId gateway, string token, WorkerCluster network) =>
        rpc.RequestAsync(gateway, WorkerMethods.Gateway.Infer, Requests.Greedy(network.Data.Prompt(), seed: 1), InferResponse.Parser,
            new RpcCallOptions { Metadata = new Dictionary<string, string> { [WorkerMethods.AuthorizationMetadata] = "Bearer " + token } },
            CancellationToken.None);
}
