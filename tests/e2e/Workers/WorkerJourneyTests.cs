using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Client;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// The user's journey across all four workers on the real stack and the real DHT, in memory and in a
/// simulation: register, log in, create an API key, infer — whole and streamed.
/// </summary>
[TestFixture]
public sealed class WorkerJourneyTests
{
    [Test]
    public void Journey_RegisterLoginCreateKeyInfer_ReturnsGeneratedTextFromAProcessor() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var client = network.NewClient();
        var user = network.Data.User();

        var registered = await client.RegisterAsync(user.Email, user.Password, CancellationToken.None);
        var login = await client.LoginAsync(user.Email, user.Password, CancellationToken.None);
        var key = await client.CreateApiKeyAsync("journey", CancellationToken.None);
        var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 7), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(registered.Email, Is.EqualTo(user.Email));
            Assert.That(login.UserId, Is.EqualTo(registered.UserId));
            Assert.That(login.Token, Is.Not.Empty);
            Assert.That(key.ApiKey, Is.Not.Empty);
            Assert.That(client.ApiKey, Is.EqualTo(key.ApiKey), "the client infers with the key it created");
            Assert.That(response.Text, Is.Not.Empty);
            Assert.That(response.Tokens, Is.GreaterThan(0));
            Assert.That(response.Model, Is.EqualTo(WorkerCluster.Model));
            Assert.That(response.FinishReason, Is.AnyOf("stop", "length"));
            Assert.That(response.Processor, Is.AnyOf(network.Processor(1).PeerId.ToString(), network.Processor(2).PeerId.ToString()));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Journey_StreamedInference_DeliversTokensInOrder_AndTheSameTextAsAWholeInference() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var prompt = network.Data.Prompt();

        var whole = await client.InferAsync(Requests.Greedy(prompt, seed: 11), CancellationToken.None);
        var chunks = await Requests.CollectAsync(client.InferStreamAsync(Requests.Greedy(prompt, seed: 11), CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(chunks, Has.Count.GreaterThan(1), "a stream of several tokens");
            Assert.That(chunks.Select(c => c.Index), Is.EqualTo(Enumerable.Range(0, chunks.Count)), "tokens arrive in order");
            Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo(whole.Text));
            Assert.That(chunks[^1].FinishReason, Is.EqualTo(whole.FinishReason));
            Assert.That(chunks.Take(chunks.Count - 1).Select(c => c.FinishReason), Is.All.Empty, "only the last chunk finishes");
            Assert.That(chunks.Select(c => c.RequestId).Distinct().Single(), Is.Not.Empty);
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Journey_ModelsList_NamesTheBuiltinModels_EachServedByBothProcessors() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);

        var models = await client.ModelsAsync(CancellationToken.None);

        Assert.That(models.Select(m => m.Name), Does.Contain(WorkerCluster.Model));
        Assert.That(models.Select(m => m.Processors), Is.All.EqualTo(2), "each model is served by both processors");
    }, WorkerCluster.Simulation());
}

/// <summary>Inference requests and stream helpers shared by the e2e tests.</summary>
internal static class Requests
{
    /// <summary>A deterministic request: temperature 0 (greedy) and a fixed seed, so every processor gives the same text.</summary>
    public static InferRequest Greedy(string prompt, long seed, int maxTokens = 24) => new()
    {
        Model = WorkerCluster.Model,
        Prompt = prompt,
        Temperature = 0,
        Seed = seed,
        MaxTokens = maxTokens,
    };

    public static async Task<List<InferChunk>> CollectAsync(IAsyncEnumerable<InferChunk> stream)
    {
        var chunks = new List<InferChunk>();
        await foreach (var chunk in stream) chunks.Add(chunk);
        return chunks;
    }

    /// <summary>Reads a stream into <paramref name="received"/> as chunks arrive (so a test can watch it grow).</summary>
    public static async Task ReadIntoAsync(IAsyncEnumerable<InferChunk> stream, List<InferChunk> received)
    {
        await foreach (var chunk in stream)
        {
            lock (received) received.Add(chunk);
        }
    }

    public static string TextOf(List<InferChunk> received)
    {
        lock (received) return string.Concat(received.Select(c => c.Text));
    }

    public static int CountOf(List<InferChunk> received)
    {
        lock (received) return received.Count;
    }

    /// <summary>Names the client type in one place (keeps the SDK's static helper discoverable from the tests).</summary>
    public static string? PartialOutputOf(P2PInference.Facilities.Rpc.RpcException e) => P2PInferenceClient.PartialOutputOf(e);
}
