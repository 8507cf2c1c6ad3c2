using System.Text.Json.Nodes;
using P2PInference.Facilities.Addressing;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.E2E.Cli;

/// <summary>
/// DCUtR in the CLI, with real processes on loopback: <c>ping</c> and <c>identify</c> of a circuit address
/// say the connection is relayed, then whether the hole punch made it direct, and the node says so too.
/// On one machine every address is loopback, which hole punching leaves out unless told otherwise: the node told so
/// upgrades the relayed connection itself, to the loopback address the command announces.
/// </summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(90_000)]
public sealed class HolePunchCliTests
{
    [Test]
    public async Task PingOfACircuitAddress_SaysRelayedThenDirect_AndIdentifyWithoutPrivateAddresses_SaysWhyItStaysRelayed(CancellationToken token)
    {
        await using var relay = CliProcess.Start("node", "--json", "--relay-service");
        var relayAddress = (string)JsonNode.Parse((await relay.Output.ReadLineAsync(token))!)!["addrs"]![0]!;
        var relayPeer = Multiaddress.Parse(relayAddress).PeerId!.ToString();
        await using var node = CliProcess.Start("node", "--relay", relayAddress, "--hole-punch-allow-private");
        var nodeAddress = (await node.Output.ReadLineAsync(token))!;
        var peerId = Multiaddress.Parse(nodeAddress).PeerId!.ToString();
        var circuit = $"{relayAddress}/p2p-circuit/p2p/{peerId}";

        // A second node keeps to public addresses: the command's loopback address is no use to it, nor its to the command.
        await using var strict = CliProcess.Start("node", "--relay", relayAddress);
        var strictPeerId = Multiaddress.Parse((await strict.Output.ReadLineAsync(token))!).PeerId!.ToString();

        var ping = await CliProcess.RunAsync(token, "ping", circuit, "--count", "1", "--hole-punch-allow-private");
        var identify = await CliProcess.RunAsync(token, "identify", $"{relayAddress}/p2p-circuit/p2p/{strictPeerId}");

        Assert.That(ping.ExitCode, Is.Zero, ping.Stderr);
        Assert.That(ping.StdoutLines[0], Is.EqualTo($"connection: relayed via {relayPeer}"));
        Assert.That(ping.StdoutLines[1], Does.StartWith("connection: direct /ip4/127.0.0.1/tcp/"), ping.Stdout);
        Assert.That(ping.StdoutLines[2], Does.StartWith($"pong from {peerId}: seq=1").And.Not.Contains("(relayed)"), "the ping went on the direct connection");
        Assert.That(identify.ExitCode, Is.Zero, identify.Stderr);
        Assert.That(identify.StdoutLines[0], Is.EqualTo($"connection: relayed via {relayPeer}"));
        Assert.That(identify.StdoutLines[1], Does.StartWith("connection: relayed (hole punch failed: "), identify.Stdout);
        Assert.That(identify.Stdout, Does.Contain($"peer id:          {strictPeerId}"));

        Assert.That(await node.TerminateAsync(token), Is.Zero);
        var nodeLines = (await node.Output.ReadToEndAsync(token)).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.That(nodeLines, Has.Some.StartsWith("dcutr: direct with "), string.Join("\n", nodeLines));
        Assert.That(await strict.TerminateAsync(token), Is.Zero);
        var strictLines = (await strict.Output.ReadToEndAsync(token)).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.That(strictLines, Has.Some.StartsWith("dcutr: still relayed with "), string.Join("\n", strictLines));
        Assert.That(await relay.TerminateAsync(token), Is.Zero);
    }
}
