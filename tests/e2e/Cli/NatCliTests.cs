using System.Text.Json.Nodes;
using P2PInference.Facilities.Addressing;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.E2E.Cli;

/// <summary>AutoNAT in the CLI's node, with real processes on loopback: peers dial a node back and it says what it concluded.</summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(60_000)]
public sealed class NatCliTests
{
    [Test]
    public async Task Node_DialledBackByThreeNodes_PrintsThatItIsPublic(CancellationToken token)
    {
        var seeds = new List<CliProcess>();
        try
        {
            var seedAddresses = new List<string>();
            for (var i = 0; i < 3; i++)
            {
                // Loopback is private: only servers told to may dial it back.
                var seed = CliProcess.Start("node", "--json", "--autonat-allow-private");
                seeds.Add(seed);
                seedAddresses.Add((string)JsonNode.Parse((await seed.Output.ReadLineAsync(token))!)!["addrs"]![0]!);
            }
            await using var node = CliProcess.Start(["node", "--json", .. seedAddresses.SelectMany(a => new[] { "--bootstrap", a })]);
            var ready = JsonNode.Parse((await node.Output.ReadLineAsync(token))!)!;
            var listen = Multiaddress.Parse((string)ready["addrs"]![0]!).WithoutPeerId();

            var nat = JsonNode.Parse((await node.Output.ReadLineAsync(token))!)!;

            Assert.That((string?)nat["event"], Is.EqualTo("nat"));
            Assert.That((string?)nat["reachability"], Is.EqualTo("public"));
            Assert.That((int)nat["confidence"]!, Is.EqualTo(3));
            Assert.That(Multiaddress.Parse((string)nat["reachedAddress"]!), Is.EqualTo(listen));
            Assert.That(await node.TerminateAsync(token), Is.Zero);
        }
        finally
        {
            foreach (var seed in seeds) await seed.DisposeAsync();
        }
    }
}
