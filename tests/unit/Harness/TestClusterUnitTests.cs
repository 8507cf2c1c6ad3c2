using P2PInference.TestKit.Harness;

namespace P2PInference.Tests.Unit.Harness;

/// <summary>The cluster without nodes (no hosts, no stores): its clock, seed and options.</summary>
[CancelAfter(10_000)]
public sealed class TestClusterUnitTests
{
    [Test]
    public async Task WaitUntil_OnAnEmptyCluster_TimesOutNamingTheSeed(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0, Seed = 31337 }, token);

        var error = Assert.ThrowsAsync<TimeoutException>(() => cluster.WaitUntilAsync(() => cluster.Nodes.Count > 0, TimeSpan.FromMinutes(10), token));

        Assert.That(error!.Message, Does.Contain("cluster.Nodes.Count > 0").And.Contain("P2P_TEST_SEED=31337"));
        Assert.That(cluster.Time.GetUtcNow() - cluster.Time.Start, Is.GreaterThanOrEqualTo(TimeSpan.FromMinutes(10)));
    }

    [Test]
    public async Task Cluster_DerivesItsDataFromItsSeed(CancellationToken token)
    {
        await using var a = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0, Seed = 5 }, token);
        await using var b = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0, Seed = 5 }, token);

        Assert.That(a.Data.ApiKey(), Is.EqualTo(b.Data.ApiKey()));
        Assert.That(a.Seed, Is.EqualTo(5));
    }

    [Test]
    public void Start_RejectsDuplicateNodeNames()
    {
        var options = new TestClusterOptions { NodeSpecs = [new("a"), new("a")] };

        Assert.ThrowsAsync<ArgumentException>(() => TestCluster.StartAsync(options, CancellationToken.None));
    }

    [Test]
    public void Start_RejectsCustomDiscoveryWithoutAFactory()
    {
        var options = new TestClusterOptions { Nodes = 0, Discovery = TestDiscoveryKind.Custom };

        Assert.ThrowsAsync<ArgumentException>(() => TestCluster.StartAsync(options, CancellationToken.None));
    }

    [Test]
    public void NodeSpec_RejectsNamesThatAreNotAnAddressComponent()
    {
        Assert.That(() => new TestNodeSpec("a/b"), Throws.ArgumentException);
        Assert.That(() => new TestNodeSpec(""), Throws.ArgumentException);
    }

    [Test]
    public async Task Node_UnknownName_FailsListingTheNodes(CancellationToken token)
    {
        await using var cluster = await TestCluster.StartAsync(new TestClusterOptions { Nodes = 0 }, token);

        Assert.That(() => cluster["nope"], Throws.InstanceOf<KeyNotFoundException>().With.Message.Contain("nope"));
    }
}
