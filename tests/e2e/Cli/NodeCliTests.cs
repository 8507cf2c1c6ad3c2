using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.E2E.Cli;

/// <summary>The journey of issue 2's CLI, with real processes on loopback: keygen, node, ping, identify.</summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(60_000)]
public sealed class NodeCliTests
{
    private string _dir = null!;

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("p2pinference-cli-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public async Task Node_ServesPingAndIdentify_ToOtherProcesses_AndStopsOnSigterm(CancellationToken token)
    {
        await using var node = CliProcess.Start("node", "--json");
        var ready = JsonNode.Parse((await node.Output.ReadLineAsync(token))!)!;
        var peerId = (string)ready["peerId"]!;
        var address = (string)ready["addrs"]![0]!;

        var ping = await CliProcess.RunAsync(token, "ping", address, "--count", "3", "--interval", "0", "--json");
        var identify = await CliProcess.RunAsync(token, "identify", address, "--json");

        Assert.That(address, Does.StartWith("/ip4/127.0.0.1/tcp/").And.EndWith("/p2p/" + peerId));
        Assert.That(ping.ExitCode, Is.Zero, ping.Stderr);
        Assert.That(ping.StdoutLines.Select(l => (double)JsonNode.Parse(l)!["rttMs"]!), Has.Exactly(3).GreaterThanOrEqualTo(0));
        Assert.That(identify.ExitCode, Is.Zero, identify.Stderr);
        var info = JsonNode.Parse(identify.Stdout)!;
        Assert.That((string)info["peerId"]!, Is.EqualTo(peerId));
        Assert.That(info["protocols"]!.AsArray().Select(p => (string)p!), Does.Contain("/ipfs/ping/1.0.0"));
        Assert.That((string)info["agentVersion"]!, Does.StartWith("p2pinference/"));
        Assert.That(await node.TerminateAsync(token), Is.Zero, "SIGTERM stops the node gracefully");
    }

    [Test]
    public async Task Node_InTextMode_PrintsEachListenAddressWithItsPeerId(CancellationToken token)
    {
        await using var node = CliProcess.Start("node", "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/0");
        var first = Multiaddress.Parse((await node.Output.ReadLineAsync(token))!);
        var second = Multiaddress.Parse((await node.Output.ReadLineAsync(token))!);

        Assert.That(first.PeerId, Is.Not.Null.And.EqualTo(second.PeerId));
        Assert.That(first.TcpHostPort()!.Value.Port, Is.Not.EqualTo(second.TcpHostPort()!.Value.Port));
        Assert.That(await node.TerminateAsync(token), Is.Zero);
    }

    [Test]
    public async Task Node_OnTheUnspecifiedAddress_PrintsWhatPeersAreTold_AnnouncedFirst(CancellationToken token)
    {
        await using var node = CliProcess.Start("node", "--json", "--listen", "/ip4/0.0.0.0/tcp/0", "--announce", "/dns4/node.example.com/tcp/4001");
        var ready = JsonNode.Parse((await node.Output.ReadLineAsync(token))!)!;
        var peerId = (string)ready["peerId"]!;
        var addresses = ready["addrs"]!.AsArray().Select(a => Multiaddress.Parse((string)a!)).ToArray();
        var loopback = addresses.Single(a => a.ToString().StartsWith("/ip4/127.0.0.1/tcp/", StringComparison.Ordinal));

        var identify = await CliProcess.RunAsync(token, "identify", loopback.ToString(), "--json");
        var refused = await CliProcess.RunAsync(token, "node", "--announce", "/ip4/0.0.0.0/tcp/4001");

        Assert.That(addresses[0].ToString(), Is.EqualTo($"/dns4/node.example.com/tcp/4001/p2p/{peerId}"));
        Assert.That(addresses, Has.None.Matches<Multiaddress>(a => a.HasUnspecifiedHost), "0.0.0.0 is given as the machine's addresses");
        Assert.That(identify.ExitCode, Is.Zero, identify.Stderr);
        Assert.That(JsonNode.Parse(identify.Stdout)!["listenAddrs"]!.AsArray().Select(a => (string)a!),
            Is.EqualTo(addresses.Select(a => a.WithoutPeerId().ToString())), "what identify tells peers is what the node printed");
        Assert.That(refused.ExitCode, Is.Not.Zero);
        Assert.That(refused.Stderr, Does.Contain("--announce '/ip4/0.0.0.0/tcp/4001' is not an address peers can dial"));
        Assert.That(await node.TerminateAsync(token), Is.Zero);
    }

    [Test]
    public async Task Keygen_ThenNode_KeepsThePeerIdAcrossRestarts(CancellationToken token)
    {
        var keyFile = Path.Combine(_dir, "node.key");
        var keygen = await CliProcess.RunAsync(token, "keygen", "--out", keyFile);
        var generated = keygen.StdoutLines.Single();

        var peerIds = new List<string>();
        for (var run = 0; run < 2; run++)
        {
            await using var node = CliProcess.Start("node", "--key-file", keyFile, "--json");
            peerIds.Add((string)JsonNode.Parse((await node.Output.ReadLineAsync(token))!)!["peerId"]!);
            await node.TerminateAsync(token);
        }

        Assert.That(keygen.ExitCode, Is.Zero);
        Assert.That(PeerId.Parse(generated).ToString(), Is.EqualTo(generated));
        Assert.That(peerIds, Has.All.EqualTo(generated));
    }

    [Test]
    public async Task Keygen_RefusesToOverwriteAKey_WithoutForce(CancellationToken token)
    {
        var keyFile = Path.Combine(_dir, "node.key");
        await CliProcess.RunAsync(token, "keygen", "--out", keyFile);
        var before = await File.ReadAllBytesAsync(keyFile, token);

        var again = await CliProcess.RunAsync(token, "keygen", "--out", keyFile);

        AssertOneLineError(again, "already exists");
        Assert.That(await File.ReadAllBytesAsync(keyFile, token), Is.EqualTo(before));
    }

    [Test]
    public async Task Ping_UnreachableAddress_FailsWithOneLine(CancellationToken token)
    {
        var address = $"/ip4/127.0.0.1/tcp/{ClosedPort()}/p2p/{KeyPair.Generate().PeerId}";

        var result = await CliProcess.RunAsync(token, "ping", address, "--count", "1");

        AssertOneLineError(result, "unreachable");
    }

    [Test]
    public async Task Ping_MalformedMultiaddr_FailsWithOneLine(CancellationToken token)
    {
        var result = await CliProcess.RunAsync(token, "ping", "/ip4/999.1.1.1/tcp/1");

        AssertOneLineError(result, "not a valid multiaddr");
    }

    [Test]
    public async Task Ping_AddressWithoutPeerId_FailsWithOneLine(CancellationToken token)
    {
        var result = await CliProcess.RunAsync(token, "identify", "/ip4/127.0.0.1/tcp/4001");

        AssertOneLineError(result, "/p2p/");
    }

    [Test]
    public async Task Ping_WrongPeerIdInTheAddress_FailsWithOneLine_AndTheNodeKeepsServing(CancellationToken token)
    {
        await using var node = CliProcess.Start("node", "--json");
        var ready = JsonNode.Parse((await node.Output.ReadLineAsync(token))!)!;
        var address = Multiaddress.Parse((string)ready["addrs"]![0]!);
        var impostor = address.WithPeerId(KeyPair.Generate().PeerId).ToString();

        var wrong = await CliProcess.RunAsync(token, "ping", impostor, "--count", "1");
        var right = await CliProcess.RunAsync(token, "ping", address.ToString(), "--count", "1");

        AssertOneLineError(wrong, "not the expected");
        Assert.That(right.ExitCode, Is.Zero, right.Stderr);
    }

    private static void AssertOneLineError(CliResult result, string expected)
    {
        Assert.That(result.ExitCode, Is.Not.Zero);
        Assert.That(result.StderrLines, Has.Length.EqualTo(1), result.Stderr);
        Assert.That(result.StderrLines[0], Does.StartWith("error: ").And.Contain(expected).IgnoreCase);
        Assert.That(result.Stderr, Does.Not.Contain("   at "), "no stack trace");
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
