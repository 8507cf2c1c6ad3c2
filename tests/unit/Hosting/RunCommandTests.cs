using P2PInference.Workers.Cli;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary><c>run</c> refuses bad input before it opens anything: one stderr line per mistake, exit 2.</summary>
[CancelAfter(10_000)]
public sealed class RunCommandTests
{
    [Test]
    public async Task Run_PrintsEveryConfigurationMistake_AndExits2()
    {
        var (code, stdout, stderr) = await RunAsync("run", "auth", "--listen", "/ip4/1.2.3/tcp/0", "--bootstrap", "/ip4/127.0.0.1/tcp/1");

        Assert.That(code, Is.EqualTo(2));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[]
        {
            "error: Node:Listen[0]: '/ip4/1.2.3/tcp/0' is not a valid multiaddr",
            "error: Node:Bootstrap[0]: '/ip4/127.0.0.1/tcp/1' does not end in /p2p/<PeerId>",
        }));
    }

    [Test]
    public async Task Run_RejectsAnUnknownRole_WithExit2()
    {
        var (code, _, stderr) = await RunAsync("run", "oracle");

        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr.Trim(), Is.EqualTo("error: unknown role 'oracle'; expected one of bootstrap, auth, gateway, processor"));
    }

    [Test]
    public async Task Run_RejectsAMissingConfigFile_WithExit2()
    {
        var (code, _, stderr) = await RunAsync("run", "gateway", "--config", "/nonexistent/p2pinference.json");

        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr.Trim(), Is.EqualTo("error: config file '/nonexistent/p2pinference.json' does not exist"));
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CliApp.RunAsync(args, output, error);
        return (code, output.ToString(), error.ToString().Replace("\r", "", StringComparison.Ordinal));
    }
}
