using System.Text.Json.Nodes;
using P2PInference.Facilities.Addressing;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.E2E.Cli;

/// <summary>Circuit relay in the CLI, with real processes on loopback: a node offers relaying, another reserves on it, and ping and identify reach the second through the first.</summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(60_000)]
public sealed class RelayCliTests
{
    [Test]
    public async Task NodeReservedOnARelay_PrintsItsCircuitAddress_AndIsPingedThroughIt(CancellationToken token)
    {
        await using var relay = CliProcess.Start("node", "--json", "--relay-service");
        var relayAddress = (string)JsonNode.Parse((await relay.Output.ReadLineAsync(token))!)!["addrs"]![0]!;
        await using var node = CliProcess.Start("node", "--json", "--relay", relayAddress);
        var ready = JsonNode.Parse((await node.Output.ReadLineAsync(token))!)!;
        var peerId = (string)ready["peerId"]!;
        var addresses = ready["addrs"]!.AsArray().Select(a => (string)a!).ToArray();
        var circuit = $"{relayAddress}/p2p-circuit/p2p/{peerId}";

        var ping = await CliProcess.RunAsync(token, "ping", circuit, "--count", "2", "--interval", "0", "--json");
        var identify = await CliProcess.RunAsync(token, "identify", circuit);

        Assert.That(addresses, Does.Contain(circuit));
        Assert.That(ping.ExitCode, Is.Zero, ping.Stderr);
        Assert.That(ping.StdoutLines.Select(l => (bool)JsonNode.Parse(l)!["relayed"]!), Is.EqualTo(new[] { true, true }));
        Assert.That(identify.ExitCode, Is.Zero, identify.Stderr);
        Assert.That(identify.Stdout, Does.Contain("connection:       relayed, limited via " + circuit));
        Assert.That(identify.Stdout, Does.Contain("  " + Multiaddress.Parse(relayAddress).Encapsulate(Multiaddress.Parse("/p2p-circuit"))));
        Assert.That(await node.TerminateAsync(token), Is.Zero);
        Assert.That(await relay.TerminateAsync(token), Is.Zero);
    }
}
