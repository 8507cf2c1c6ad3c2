using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Network;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// What a user sees when part of the network fails: Auth down or restarted, a processor crashing
/// mid-stream or cut off from the gateway, every processor gone, a rate limit, an expired login — on
/// the real stack and DHT, in memory, on fake time.
/// </summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class WorkerFailureTests
{
    [Test]
    public async Task Gateway_AnswersUnavailableNamingAuth_WhenAuthIsDown(CancellationToken ct)
    {
        await using var network = await WorkerCluster.StartAsync(null, ct);
        var (client, user, _) = await network.SignedUpClientAsync(ct);

        await network.Cluster.KillAsync(WorkerCluster.AuthNode, ct);
        // The key was never used, so the gateway has not cached it: it must ask Auth.
        var inference = await network.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 1), ct), ct);
        var login = await network.FailureOfAsync(() => client.LoginAsync(user.Email, user.Password, ct), ct);

        Assert.Multiple(() =>
        {
            Assert.That(inference.Code, Is.EqualTo(RpcStatusCode.Unavailable));
            Assert.That(inference.Message, Does.Contain("auth"));
            Assert.That(login.Code, Is.EqualTo(RpcStatusCode.Unavailable));
            Assert.That(login.Message, Does.Contain("auth"));
        });
    }

    [Test]
    public async Task Auth_KeepsItsUsersAndKeys_AcrossAKillAndRestart(CancellationToken ct)
    {
        await using var network = await WorkerCluster.StartAsync(null, ct);
        var (client, user, userId) = await network.SignedUpClientAsync(ct);
        var peerId = network.Auth.PeerId;

        await network.Cluster.KillAsync(WorkerCluster.AuthNode, ct);
        await network.Cluster.RestartAsync(WorkerCluster.AuthNode, ct);

        var again = network.NewClient();
        var login = await network.RunAsync(() => again.LoginAsync(user.Email, user.Password, ct), ct);
        // The key made before the crash, never used (so not cached by the gateway): Auth itself must still know it.
        var response = await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 2), ct), ct);

        Assert.Multiple(() =>
        {
            Assert.That(network.Auth.PeerId, Is.EqualTo(peerId));
            Assert.That(login.UserId, Is.EqualTo(userId));
            Assert.That(response.Text, Is.Not.Empty);
        });
    }

    [Test]
    public async Task Stream_EndsWithTheTextSoFar_WhenItsProcessorCrashesMidStream(CancellationToken ct)
    {
        await using var network = await WorkerCluster.StartAsync(null, ct);
        var (client, _, _) = await network.SignedUpClientAsync(ct);
        var holding = network.Gate.Arm(afterTokens: 3);
        var received = new List<InferChunk>();

        var stream = Requests.ReadIntoAsync(client.InferStreamAsync(Requests.Greedy(network.Data.Prompt(), seed: 3, maxTokens: 40), ct), received);
        var crashed = await network.RunAsync(() => holding, ct);
        await network.WaitUntilAsync(() => Requests.CountOf(received) == 3, ct);
        await network.Cluster.KillAsync(crashed, ct);
        var error = await network.FailureOfAsync(() => stream, ct);

        Assert.Multiple(() =>
        {
            Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable), error.Message);
            Assert.That(Requests.PartialOutputOf(error), Is.EqualTo(Requests.TextOf(received)).And.Not.Empty);
            Assert.That(received.Select(c => c.Processor).Distinct(), Is.EqualTo(new[] { network.Cluster[crashed].PeerId.ToString() }));
        });
    }

    [Test]
    public async Task Stream_FailsOverToAnotherProcessor_WhenItsProcessorCrashesBeforeTheFirstToken(CancellationToken ct)
    {
        await using var network = await WorkerCluster.StartAsync(null, ct);
        var (client, _, _) = await network.SignedUpClientAsync(ct);
        var prompt = network.Data.Prompt();
        var expected = await network.RunAsync(() => client.InferAsync(Requests.Greedy(prompt, seed: 4), ct), ct);
        var holding = network.Gate.Arm(afterTokens: 0);
        var received = new List<InferChunk>();

        var stream = Requests.ReadIntoAsync(client.InferStreamAsync(Requests.Greedy(prompt, seed: 4), ct), received);
        var crashed = await network.RunAsync(() => holding, ct);
        await network.Cluster.KillAsync(crashed, ct);
        await network.RunAsync(async () =>
        {
            await stream;
            return true;
        }, ct);

        var survivor = crashed == WorkerCluster.ProcessorName(1) ? network.Processor(2) : network.Processor(1);
        Assert.Multiple(() =>
        {
            Assert.That(Requests.TextOf(received), Is.EqualTo(expected.Text));
            Assert.That(received.Select(c => c.Processor).Distinct(), Is.EqualTo(new[] { survivor.PeerId.ToString() }));
        });
    }

    [Test]
    public async Task Gateway_ServesEveryRequestThroughTheOtherProcessor_WhenPartitionedFromOne(CancellationToken ct)
    {
        await using var network = await WorkerCluster.StartAsync(null, ct);
        var (client, _, _) = await network.SignedUpClientAsync(ct);

        await network.Cluster.PartitionAsync(WorkerCluster.GatewayNode, WorkerCluster.ProcessorName(1), PartitionMode.Reset, cancellationToken: ct);
        var served = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var response = await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 10 + i), ct), ct);
            served.Add(response.Processor);
        }
        var streamed = await network.RunAsync(() => Requests.CollectAsync(client.InferStreamAsync(Requests.Greedy(network.Data.Prompt(), seed: 20), ct)), ct);

        Assert.Multiple(() =>
        {
            Assert.That(served, Is.All.EqualTo(network.Processor(2).PeerId.ToString()));
            Assert.That(streamed.Select(c => c.Processor).Distinct(), Is.EqualTo(new[] { network.Processor(2).PeerId.ToString() }));
        });
    }

    [Test]
    public async Task Gateway_AnswersUnavailableNamingTheModel_WhenEveryProcessorIsGone_AndServesAgainOnceOneReturns(CancellationToken ct)
    {
        await using var network = await WorkerCluster.StartAsync(null, ct);
        var (client, _, _) = await network.SignedUpClientAsync(ct);
        await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), ct), ct);

        await network.Cluster.KillAsync(WorkerCluster.ProcessorName(1), ct);
        await network.Cluster.KillAsync(WorkerCluster.ProcessorName(2), ct);
        var whole = await network.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), ct), ct);
        var streamed = await network.FailureOfAsync(() => Requests.CollectAsync(client.InferStreamAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), ct)), ct);
        // Once the processors' DHT records have expired too, the gateway finds nobody at all.
        await network.AdvanceAsync(TimeSpan.FromMinutes(3), ct);
        var later = await network.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), ct), ct);
        // A processor coming back (it re-announces its models) is found and used again.
        await network.Cluster.RestartAsync(WorkerCluster.ProcessorName(1), ct);
        await network.AdvanceAsync(TimeSpan.FromSeconds(10), ct);
        var recovered = await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), ct), ct);

        Assert.Multiple(() =>
        {
            foreach (var error in new[] { whole, streamed, later })
            {
                Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable), error.Message);
                Assert.That(error.Message, Does.Contain($"'{WorkerCluster.Model}'"));
            }
            Assert.That(recovered.Processor, Is.EqualTo(network.Processor(1).PeerId.ToString()));
        });
    }

    [Test]
    public async Task Gateway_RefusesWithRetryAfter_WhenTheRateLimitIsExceeded_AndServesAgainOnceItHasPassed(CancellationToken ct)
    {
        var options = new WorkerClusterOptions
        {
            Auth = () => new AuthOptions
            {
                PasswordIterations = AuthOptions.MinPasswordIterations,
                DefaultQuota = new AuthQuota { RequestsPerMinute = 2, Burst = 2 },
            },
        };
        await using var network = await WorkerCluster.StartAsync(options, ct);
        var (client, _, _) = await network.SignedUpClientAsync(ct);

        await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), ct), ct);
        await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), ct), ct);
        var refused = await network.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), ct), ct);
        var stillRefused = await network.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), ct), ct);
        await network.AdvanceAsync(refused.RetryAfter ?? TimeSpan.FromMinutes(1), ct);
        var served = await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), ct), ct);

        Assert.Multiple(() =>
        {
            Assert.That(refused.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted), refused.Message);
            Assert.That(refused.RetryAfter, Is.GreaterThan(TimeSpan.Zero).And.LessThanOrEqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(stillRefused.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
            Assert.That(served.Text, Is.Not.Empty);
        });
    }

    [Test]
    public async Task Gateway_RefusesAnExpiredLoginToken_WithUnauthenticated_WhileTheApiKeyStillWorks(CancellationToken ct)
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
        await using var network = await WorkerCluster.StartAsync(options, ct);
        var (client, _, _) = await network.SignedUpClientAsync(ct);
        var apiKey = client.ApiKey;
        client.ApiKey = null;
        var keysBefore = await network.RunAsync(() => client.ListApiKeysAsync(ct), ct);
        await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 8), ct), ct);

        await network.AdvanceAsync(TimeSpan.FromMinutes(6), ct);
        var listing = await network.FailureOfAsync(() => client.ListApiKeysAsync(ct), ct);
        var inference = await network.FailureOfAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 8), ct), ct);
        client.ApiKey = apiKey;
        var withKey = await network.RunAsync(() => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 8), ct), ct);

        Assert.Multiple(() =>
        {
            Assert.That(keysBefore, Has.Count.EqualTo(1));
            Assert.That(listing.Code, Is.EqualTo(RpcStatusCode.Unauthenticated), listing.Message);
            Assert.That(inference.Code, Is.EqualTo(RpcStatusCode.Unauthenticated), inference.Message);
            Assert.That(withKey.Text, Is.Not.Empty);
        });
    }
}
