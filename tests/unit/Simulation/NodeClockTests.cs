using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Simulation;

[TestFixture]
public sealed class NodeClockTests
{
    [Test]
    public void Offset_MovesTheWallClock_NotTheTimestamps()
    {
        var sim = new SimulationExecutor(seed: 1);
        var node = sim.CreateNodeClock(offset: TimeSpan.FromMinutes(-3));
        var timestamp = node.GetTimestamp();

        node.Offset = TimeSpan.FromMinutes(2);

        Assert.That(node.GetUtcNow() - sim.Clock.GetUtcNow(), Is.EqualTo(TimeSpan.FromMinutes(2)));
        Assert.That(node.GetElapsedTime(timestamp), Is.EqualTo(TimeSpan.Zero));
    }

    [Test]
    public void Drift_MakesTheNodesTimeRunFaster_AndItsTimersFireEarlierOnTheSimulationClock()
    {
        var sim = new SimulationExecutor(seed: 1);
        var fast = sim.CreateNodeClock(drift: 0.5);
        var exact = sim.CreateNodeClock();

        var fired = sim.Run(async () =>
        {
            var order = new List<(string Node, TimeSpan Simulation)>();
            var start = fast.GetTimestamp();
            await Task.WhenAll(
                Fire("exact", exact),
                Fire("fast", fast));
            order.Add(("fast elapsed", fast.GetElapsedTime(start)));
            return order;

            async Task Fire(string name, TimeProvider clock)
            {
                await Task.Delay(TimeSpan.FromSeconds(12), clock);
                order.Add((name, sim.Clock.Elapsed));
            }
        });

        Assert.That(fired, Is.EqualTo(new[]
        {
            ("fast", TimeSpan.FromSeconds(8)),
            ("exact", TimeSpan.FromSeconds(12)),
            ("fast elapsed", TimeSpan.FromSeconds(18)),
        }));
    }

    [Test]
    public void DriftChange_KeepsTheNodesTimeContinuous()
    {
        var sim = new SimulationExecutor(seed: 1);
        var node = sim.CreateNodeClock(drift: 1);

        sim.Run(async () =>
        {
            await Task.Delay(TimeSpan.FromSeconds(10), sim.Clock);
            node.Drift = 0;
            await Task.Delay(TimeSpan.FromSeconds(10), sim.Clock);
        });

        Assert.That(node.GetUtcNow() - sim.Clock.Start, Is.EqualTo(TimeSpan.FromSeconds(30)));
    }

    [Test]
    public void Drift_AtOrBelowMinusOne_IsRefused()
    {
        var sim = new SimulationExecutor(seed: 1);

        Assert.That(() => sim.CreateNodeClock(drift: -1), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
