using System.Text.Json.Nodes;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using P2PInference.Workers.Cli;

namespace P2PInference.Tests.Unit.Trust;

/// <summary><c>p2pinference cluster revoke</c>: the operator's plain list, signed by the cluster key into the file workers load.</summary>
[CancelAfter(10_000)]
public sealed class ClusterRevokeCommandTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("p2p-revoke-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    [Test]
    public async Task Revoke_SignsThePlainList_IntoAFileThatVerifiesUnderTheCluster()
    {
        var keyPath = Path.Combine(_dir, "cluster.key");
        var (initCode, clusterId, _) = await RunAsync("cluster", "init", "--out", keyPath);
        var peer = KeyPair.FromSeed(Enumerable.Repeat((byte)0x51, 32).ToArray()).PeerId;
        var listPath = Path.Combine(_dir, "revoked.txt");
        await File.WriteAllTextAsync(listPath, $"# retired\n00000000000000a7\n{peer}   # lost laptop\n");
        var outPath = Path.Combine(_dir, "revoked.signed");

        var (code, stdout, stderr) = await RunAsync("cluster", "revoke", "--cluster-key", keyPath, "--list", listPath, "--out", outPath, "--json");

        Assert.That(initCode, Is.Zero);
        Assert.That(code, Is.Zero, stderr);
        var summary = JsonNode.Parse(stdout)!;
        var signed = SignedRevocationList.FromText(await File.ReadAllTextAsync(outPath));
        Assert.Multiple(() =>
        {
            Assert.That((int?)summary["entries"], Is.EqualTo(2));
            Assert.That((string?)summary["clusterId"], Is.EqualTo(clusterId.Trim()));
            Assert.That(signed.IsSignedBy(ClusterId.Parse(clusterId.Trim())), Is.True);
            Assert.That(signed.List.ToText(), Is.EqualTo($"00000000000000a7\n{peer}\n"));
        });
    }

    [Test]
    public async Task Revoke_OfAListWithABadLine_NamesTheLine_AndWritesNothing()
    {
        var keyPath = Path.Combine(_dir, "cluster.key");
        await RunAsync("cluster", "init", "--out", keyPath);
        var listPath = Path.Combine(_dir, "revoked.txt");
        await File.WriteAllTextAsync(listPath, "00000000000000a7\nnot-a-serial\n");
        var outPath = Path.Combine(_dir, "revoked.signed");

        var (code, _, stderr) = await RunAsync("cluster", "revoke", "--cluster-key", keyPath, "--list", listPath, "--out", outPath);

        Assert.That(code, Is.EqualTo(CliErrors.Failure));
        Assert.That(stderr, Does.Contain("line 2").And.Contain("not-a-serial"));
        Assert.That(File.Exists(outPath), Is.False);
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CliApp.RunAsync(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
