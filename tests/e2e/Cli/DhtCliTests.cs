using System.Text.Json.Nodes;
using P2PInference.Facilities.Identity;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.E2E.Cli;

/// <summary>Issue 3's CLI journey with real processes: a node provides a topic, another process finds it.</summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(60_000)]
public sealed class DhtCliTests
{
    [Test]
    public async Task DhtFind_FindsTheTopicANodeProvides(CancellationToken token)
    {
        await using var seed = CliProcess.Start("node", "--json");
        var seedAddress = (string)JsonNode.Parse((await seed.Output.ReadLineAsync(token))!)!["addrs"]![0]!;
        await using var provider = CliProcess.Start("node", "--json", "--bootstrap", seedAddress, "--provide", "p2pinference/e2e-topic");
        var providerId = (string)JsonNode.Parse((await provider.Output.ReadLineAsync(token))!)!["peerId"]!;

        var found = await CliProcess.RunAsync(token, "dht", "find", "p2pinference/e2e-topic", "--bootstrap", seedAddress, "--json");

        Assert.That(found.ExitCode, Is.Zero, found.Stderr);
        var providers = JsonNode.Parse(found.Stdout)!["providers"]!.AsArray();
        Assert.That(providers.Select(p => (string)p!["peerId"]!), Does.Contain(providerId));
        Assert.That(providers.Single(p => (string)p!["peerId"]! == providerId)!["addrs"]!.AsArray(), Is.Not.Empty);
    }

    [Test]
    public async Task DhtFind_ExitsOne_WhenNobodyProvidesTheTopic(CancellationToken token)
    {
        await using var seed = CliProcess.Start("node", "--json");
        var seedAddress = (string)JsonNode.Parse((await seed.Output.ReadLineAsync(token))!)!["addrs"]![0]!;

        var found = await CliProcess.RunAsync(token, "dht", "find", "p2pinference/nobody", "--bootstrap", seedAddress);

        Assert.That(found.ExitCode, Is.EqualTo(1), found.Stderr);
        Assert.That(found.StdoutLines, Is.Empty);
    }

    [Test]
    public async Task DhtFind_ExitsTwo_WithOneLine_WhenTheBootstrapPeerIsUnreachable(CancellationToken token)
    {
        var bootstrap = $"/ip4/127.0.0.1/tcp/1/p2p/{KeyPair.Generate().PeerId}";

        var found = await CliProcess.RunAsync(token, "dht", "find", "p2pinference/x", "--bootstrap", bootstrap, "--timeout", "5");

        Assert.That(found.ExitCode, Is.EqualTo(2));
        Assert.That(found.StderrLines, Has.Length.EqualTo(1));
        Assert.That(found.StderrLines[0], Does.StartWith("error: "));
    }

    [Test]
    public async Task DhtFind_ExitsTwo_WhenTheBootstrapAddressHasNoPeerId(CancellationToken token)
    {
        var found = await CliProcess.RunAsync(token, "dht", "find", "p2pinference/x", "--bootstrap", "/ip4/127.0.0.1/tcp/1");

        Assert.That(found.ExitCode, Is.EqualTo(2));
        Assert.That(found.StderrLines.Single(), Does.Contain("/p2p/"));
    }
}
