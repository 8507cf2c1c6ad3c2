using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// What a user sees when part of the network fails: Auth down or restarted, a processor crashing
/// mid-stream or cut off from the gateway, every processor gone, a rate limit, an expired login — on
/// the real stack and DHT, in memory, in a simulation.
/// </summary>
[TestFixture]
public sealed class WorkerFailureTests
{
    [Test]
    public void Gateway_AnswersUnavailableNamingAuth_WhenAuthIsDown() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, user, _) = await network.SignedUpClientAsync(CancellationToken.None);

        await network.Cluster.KillAsync(WorkerCluster.AuthNode, CancellationToken.None);
        // The key was never used, so the gateway has not cached it: it must ask Auth.
        var inference = await WorkerCluster.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 1), CancellationToken.None));
        var login = await WorkerCluster.FailureOfAsync(() => client.LoginAsync(user.Email, user.Password, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(inference.Code, Is.EqualTo(RpcStatusCode.Unavailable));
            Assert.That(inference.Message, Does.Contain("auth"));
            Assert.That(login.Code, Is.EqualTo(RpcStatusCode.Unavailable));
            Assert.That(login.Message, Does.Contain("auth"));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Auth_KeepsItsUsersAndKeys_AcrossAKillAndRestart() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, user, userId) = await network.SignedUpClientAsync(CancellationToken.None);
        var peerId = network.Auth.PeerId;

        await network.Cluster.KillAsync(WorkerCluster.AuthNode, CancellationToken.None);
        await network.Cluster.RestartAsync(WorkerCluster.AuthNode, CancellationToken.None);

        var again = network.NewClient();
        var login = await again.LoginAsync(user.Email, user.Password, CancellationToken.None);
        // The key made before the crash, never used (so not cached by the gateway): Auth itself must still know it.
        var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 2), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(network.Auth.PeerId, Is.EqualTo(peerId));
            Assert.That(login.UserId, Is.EqualTo(userId));
            Assert.That(response.Text, Is.Not.Empty);
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Stream_EndsWithTheTextSoFar_WhenItsProcessorCrashesMidStream() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var holding = network.Gate.Arm(afterTokens: 3);
        var received = new List<InferChunk>();

        var stream = Requests.ReadIntoAsync(client.InferStreamAsync(Requests.Greedy(network.Data.Prompt(), seed: 3, maxTokens: 40), CancellationToken.None), received);
        var crashed = await holding;
        await network.WaitUntilAsync(() => Requests.CountOf(received) == 3);
        await network.Cluster.KillAsync(crashed, CancellationToken.None);
        var error = await WorkerCluster.FailureOfAsync(() => stream);

        Assert.Multiple(() =>
        {
            Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable), error.Message);
            Assert.That(Requests.PartialOutputOf(error), Is.EqualTo(Requests.TextOf(received)).And.Not.Empty);
            Assert.That(received.Select(c => c.Processor).Distinct(), Is.EqualTo(new[] { network.Cluster[crashed].PeerId.ToString() }));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Stream_FailsOverToAnotherProcessor_WhenItsProcessorCrashesBeforeTheFirstToken() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var prompt = network.Data.Prompt();
        var expected = await client.InferAsync(Requests.Greedy(prompt, seed: 4), CancellationToken.None);
        var holding = network.Gate.Arm(afterTokens: 0);
        var received = new List<InferChunk>();

        var stream = Requests.ReadIntoAsync(client.InferStreamAsync(Requests.Greedy(prompt, seed: 4), CancellationToken.None), received);
        var crashed = await holding;
        await network.Cluster.KillAsync(crashed, CancellationToken.None);
        await stream;

        var survivor = crashed == WorkerCluster.ProcessorName(1) ? network.Processor(2) : network.Processor(1);
        Assert.Multiple(() =>
        {
            Assert.That(Requests.TextOf(received), Is.EqualTo(expected.Text));
            Assert.That(received.Select(c => c.Processor).Distinct(), Is.EqualTo(new[] { survivor.PeerId.ToString() }));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Gateway_ServesEveryRequestThroughTheOtherProcessor_WhenPartitionedFromOne() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);

        await network.Cluster.PartitionAsync(WorkerCluster.GatewayNode, WorkerCluster.ProcessorName(1), PartitionMode.Reset, cancellationToken: CancellationToken.None);
        var served = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 10 + i), CancellationToken.None);
            served.Add(response.Processor);
        }
        var streamed = await Requests.CollectAsync(client.InferStreamAsync(Requests.Greedy(network.Data.Prompt(), seed: 20), CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(served, Is.All.EqualTo(network.Processor(2).PeerId.ToString()));
            Assert.That(streamed.Select(c => c.Processor).Distinct(), Is.EqualTo(new[] { network.Processor(2).PeerId.ToString() }));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Client_SendsItsInferencesToTheOtherGateway_WhenOneIsPartitionedFromEveryProcessor() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Gateways = 2 }, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);

        // The first gateway still answers its clients, but cannot reach a single processor.
        foreach (var processor in new[] { 1, 2 })
            await network.Cluster.PartitionAsync(WorkerCluster.GatewayNode, WorkerCluster.ProcessorName(processor), PartitionMode.Reset,
                cancellationToken: CancellationToken.None);
        var served = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 30 + i), CancellationToken.None);
            served.Add(response.Processor);
            var streamed = await Requests.CollectAsync(client.InferStreamAsync(Requests.Greedy(network.Data.Prompt(), seed: 40 + i), CancellationToken.None));
            served.AddRange(streamed.Select(c => c.Processor).Distinct());
        }

        // An inference is not idempotent: it moves to the other gateway only because the first says it did none of its work.
        Assert.That(served, Has.Count.EqualTo(12).And.All.Not.Empty);
    }, WorkerCluster.Simulation());

    [Test]
    public void Gateway_AnswersUnavailableNamingTheModel_WhenEveryProcessorIsGone_AndServesAgainOnceOneReturns() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None);

        await network.Cluster.KillAsync(WorkerCluster.ProcessorName(1), CancellationToken.None);
        await network.Cluster.KillAsync(WorkerCluster.ProcessorName(2), CancellationToken.None);
        var whole = await WorkerCluster.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None));
        var streamed = await WorkerCluster.FailureOfAsync(() => Requests.CollectAsync(client.InferStreamAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None)));
        // Once the processors' DHT records have expired too, the gateway finds nobody at all.
        await network.AdvanceAsync(TimeSpan.FromMinutes(3));
        var later = await WorkerCluster.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None));
        // A processor coming back (it re-announces its models) is found and used again.
        await network.Cluster.RestartAsync(WorkerCluster.ProcessorName(1), CancellationToken.None);
        await network.AdvanceAsync(TimeSpan.FromSeconds(10));
        var recovered = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None);

        Assert.Multiple(() =>
        {
            foreach (var error in new[] { whole, streamed, later })
            {
                Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable), error.Message);
                Assert.That(error.Message, Does.Contain($"'{WorkerCluster.Model}'"));
            }
            Assert.That(recovered.Processor, Is.EqualTo(network.Processor(1).PeerId.ToString()));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Gateway_RefusesWithRetryAfter_WhenTheRateLimitIsExceeded_AndServesAgainOnceItHasPassed() => SimulationTest.Run(async sim =>
    {
        var options = new WorkerClusterOptions
        {
            Auth = () => new AuthOptions
            {
                PasswordIterations = AuthOptions.MinPasswordIterations,
                DefaultQuota = new AuthQuota { RequestsPerMinute = 2, Burst = 2 },
            },
        };
        await using var network = await WorkerCluster.StartAsync(options, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);

        await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), CancellationToken.None);
        await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), CancellationToken.None);
        var refused = await WorkerCluster.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), CancellationToken.None));
        var stillRefused = await WorkerCluster.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), CancellationToken.None));
        await network.AdvanceAsync(refused.RetryAfter ?? TimeSpan.FromMinutes(1));
        var served = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(refused.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted), refused.Message);
            Assert.That(refused.RetryAfter, Is.GreaterThan(TimeSpan.Zero).And.LessThanOrEqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(stillRefused.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
            Assert.That(served.Text, Is.Not.Empty);
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Gateway_RefusesAnExpiredLoginToken_WithUnauthenticated_WhileTheApiKeyStillWorks() => SimulationTest.Run(async sim =>
    {
        var options = new WorkerClusterOptions
        {
            Auth = () => new AuthOptions
            {
                PasswordIterations = AuthOptions.MinPasswordIterations,
                TokenLifetime = TimeSpan.FromMinutes(5),
                ClockSkew = TimeSpan.FromSeconds(30),
            },
        };
        await using var network = await WorkerCluster.StartAsync(options, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var apiKey = client.ApiKey;
        client.ApiKey = null;
        var keysBefore = await client.ListApiKeysAsync(CancellationToken.None);
        await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 8), CancellationToken.None);

        await network.AdvanceAsync(TimeSpan.FromMinutes(6));
        var listing = await WorkerCluster.FailureOfAsync(() => client.ListApiKeysAsync(CancellationToken.None));
        var inference = await WorkerCluster.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 8), CancellationToken.None));
        client.ApiKey = apiKey;
        var withKey = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 8), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(keysBefore, Has.Count.EqualTo(1));
            Assert.That(listing.Code, Is.EqualTo(RpcStatusCode.Unauthenticated), listing.Message);
            Assert.That(inference.Code, Is.EqualTo(RpcStatusCode.Unauthenticated), inference.Message);
            Assert.That(withKey.Text, Is.Not.Empty);
        });
    }, WorkerCluster.Simulation());
}
