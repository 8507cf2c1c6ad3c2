using P2PInference.TestKit;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// A seed replays the whole worker journey — four workers, the DHT, the auth store — step for step:
/// the same trace hash, the same processor, the same text; another seed takes another course.
/// </summary>
[TestFixture]
public sealed class WorkerReplayTests
{
    [TestCase(ScheduleStrategy.Fifo)]
    [TestCase(ScheduleStrategy.Random)]
    public void Journey_WithTheSameSeed_ReplaysExactly_StorageIncluded(ScheduleStrategy strategy)
    {
        var seed = TestSeed.Choose();
        var first = RunJourney(seed, strategy);
        var second = RunJourney(seed, strategy);

        Assert.That(first.StoredKeys, Is.GreaterThan(0), "the journey wrote to the auth store");
        Assert.That(second.Outcome, Is.EqualTo(first.Outcome), "the same processor, text, API key and stored records");
        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash), $"the same steps in the same order (seed {seed}, {strategy})");
        Assert.That(second.Steps, Is.EqualTo(first.Steps));
    }

    [Test]
    public void Journey_WithAnotherSeed_TakesAnotherCourse()
    {
        var seed = TestSeed.Choose();
        var first = RunJourney(seed, ScheduleStrategy.Fifo);
        var other = RunJourney(unchecked(seed + 1), ScheduleStrategy.Fifo);

        Assert.That(other.TraceHash, Is.Not.EqualTo(first.TraceHash));
    }

    private sealed record Run(string Outcome, int StoredKeys, ulong TraceHash, long Steps);

    private static Run RunJourney(int seed, ScheduleStrategy strategy)
    {
        var outcome = "";
        var storedKeys = 0;
        var sim = SimulationTest.Run(async sim =>
        {
            await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
            var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
            var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 3), CancellationToken.None);
            // The user's records went through the auth worker's store, on the executor like everything else.
            storedKeys = network.Auth.Store!.Count;
            outcome = $"{response.Processor} {response.Text} {client.ApiKey} {storedKeys}";
        }, WorkerCluster.Simulation() with { Seed = seed, Strategy = strategy });
        return new Run(outcome, storedKeys, sim.TraceHash, sim.Steps);
    }
}
