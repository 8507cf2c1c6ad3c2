using System.Diagnostics;
using System.Globalization;
using System.Text;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.Integration.Nat;

/// <summary>
/// Runs tests/nat-lab/nat-lab.sh: our nodes in network namespaces behind two real NAT routers
/// (nftables masquerade that drops unsolicited inbound), a relay on a public segment. Real NATs are
/// the point of this test: where the machine cannot make them (not root, no CAP_SYS_ADMIN) it fails
/// with the script's reason, never skips. CI runs as root.
/// </summary>
[CancelAfter(240_000)]
public sealed class RealNatLabTests
{
    /// <summary>The script's exit code for "this machine cannot run the lab".</summary>
    private const int CannotRunHere = 77;

    private static string Script => Path.Combine(RepositoryPaths.Root, "tests", "nat-lab", "nat-lab.sh");

    [Test]
    public async Task PeersBehindTwoNats_ConnectThroughTheRelay_ThenDirectlyAfterHolePunching(CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsLinux()) Assert.Fail("the NAT lab needs Linux network namespaces, as CI has");
        var probe = await RunScriptAsync(["--probe"], cancellationToken);
        if (probe.ExitCode == CannotRunHere) Assert.Fail($"the NAT lab cannot run here, and it needs to, as in CI: {probe.Output.Trim()}");
        Assert.That(probe.ExitCode, Is.Zero, probe.Output);

        var lab = await RunScriptAsync([Path.Combine(AppContext.BaseDirectory, "p2pinference.dll")], cancellationToken);

        TestContext.Out.WriteLine(lab.Output);
        Assert.That(lab.ExitCode, Is.Zero, lab.Output);
        Assert.That(lab.Output, Does.Contain("PASS  NAT 1 drops unsolicited inbound"), "without the relay A cannot reach B");
        Assert.That(lab.Output, Does.Contain("PASS  relayed connection first: connection: relayed via "));
        Assert.That(lab.Output, Does.Contain("PASS  direct connection after DCUtR: connection: direct /ip4/203.0.113.11/tcp/"));
        Assert.That(lab.Output, Does.Contain("result: PASS"));
    }

    /// <summary>
    /// Runs the script to its end with standard output and error as one text. On cancellation it
    /// gets SIGTERM first, so its trap removes the namespaces it made, and is killed only if it lingers.
    /// </summary>
    private static async Task<(int ExitCode, string Output)> RunScriptAsync(string[] arguments, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Script);
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        var output = new StringBuilder();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await process.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            await TerminateAsync(process);
            throw;
        }
        // WaitForExitAsync also waits for both redirected streams to end, so every line is in.
        lock (output) return (process.ExitCode, output.ToString());

        void Append(string? line)
        {
            if (line is null) return;
            lock (output) output.AppendLine(line);
        }
    }

    private static async Task TerminateAsync(Process process)
    {
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]))
            await kill.WaitForExitAsync(CancellationToken.None);
        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(30), TimeProvider.System);
        try
        {
            await process.WaitForExitAsync(grace.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
        }
    }
}
