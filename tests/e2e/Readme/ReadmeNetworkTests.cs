using System.Diagnostics;
using System.Globalization;
using System.Text;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.E2E.Readme;

/// <summary>
/// The README's "network of separate processes", run the way a new user runs it: every line of its
/// shell blocks, as written, through bash, in a scratch directory holding the README's sample
/// configurations. Only <c>dotnet run --project src/Workers --</c> is replaced by the executable the
/// tests were built with (a user's first <c>dotnet run</c> builds the same program). Workers run in
/// the background as in their own terminals; each other line must exit 0. If the README changes,
/// this test follows it; if a command in it breaks, this test fails naming the line.
/// </summary>
[TestFixture]
[NonParallelizable]
// Six real processes on real time, two password hashes at OWASP's cost and graceful stops: about a
// minute on an idle machine, four with every core busy; the bound is for a hang, not for load.
[CancelAfter(480_000)]
public sealed class ReadmeNetworkTests
{
    private const string Section = "A network of separate processes";
    private static readonly string Executable = Path.Combine(AppContext.BaseDirectory, "p2pinference.dll");

    private string _root = null!;
    private readonly List<Process> _workers = [];
    private readonly List<StringBuilder> _workerErrors = [];
    private readonly List<string> _workerLines = [];
    // A worker drains for at most its DrainTimeout (a few seconds) before it exits.
    private static readonly TimeSpan GracefulStop = TimeSpan.FromSeconds(60);

    [SetUp]
    public void SetUp()
    {
        _root = Directory.CreateTempSubdirectory("p2pinference-readme-").FullName;
        var configs = Path.Combine(_root, "fixtures", "configs");
        Directory.CreateDirectory(configs);
        foreach (var file in Directory.GetFiles(RepositoryPaths.Fixture("configs"), "*.json"))
            File.Copy(file, Path.Combine(configs, Path.GetFileName(file)));
        Directory.CreateDirectory(Path.Combine(_root, "home"));
    }

    [TearDown]
    public async Task TearDown()
    {
        // Only after a failure is a worker still running here.
        foreach (var worker in _workers)
        {
            await CliProcess.StopAsync(worker);
            worker.Dispose();
        }
        _workers.Clear();
        _workerLines.Clear();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Test]
    public async Task NetworkOfSeparateProcesses_RunsAsWrittenInTheReadme(CancellationToken ct)
    {
        var steps = ReadmeScript.StepsOf(await File.ReadAllTextAsync(Path.Combine(RepositoryPaths.Root, "README.md"), ct), Section);
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        var outputs = new List<(ReadmeStep Step, string Stdout)>();

        foreach (var step in steps)
        {
            var line = ReadmeScript.WithExecutable(step.Line, Executable);
            switch (step.Kind)
            {
                case ReadmeStepKind.Assignment:
                {
                    var result = await RunAsync($"{line}\nprintf '%s' \"${step.Variable}\"", variables, ct);
                    RequireSuccess(step, result);
                    variables[step.Variable!] = result.Stdout;
                    break;
                }
                case ReadmeStepKind.Worker:
                    await StartWorkerAsync(step, line, variables, ct);
                    break;
                default:
                {
                    var result = await RunAsync(line, variables, ct);
                    RequireSuccess(step, result);
                    outputs.Add((step, result.Stdout));
                    break;
                }
            }
        }

        var infer = outputs.LastOrDefault(o => o.Step.Line.Contains(" client infer ", StringComparison.Ordinal));
        var curl = outputs.LastOrDefault(o => o.Step.Line.StartsWith("curl ", StringComparison.Ordinal));
        Assert.Multiple(() =>
        {
            Assert.That(variables.GetValueOrDefault("BOOT"), Does.Match("^/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW[1-9A-HJ-NP-Za-km-z]+$"),
                "BOOT is the bootstrap node's full address");
            Assert.That(_workers, Has.Count.EqualTo(6), "bootstrap, auth, gateway, two processors and client serve");
            foreach (var command in new[] { " client register ", " client login ", " client keys create", " client infer " })
                Assert.That(outputs.Select(o => o.Step.Line), Has.Some.Contains(command), $"the README's client steps include{command}");
            Assert.That(infer.Stdout, Does.Match(@"\w"), "the streamed inference prints text");
            Assert.That(curl.Stdout, Does.Contain("\"chat.completion\""), "curl gets a chat completion from client serve");
        });

        // `kill -TERM` in each terminal, as the README says (Ctrl+C is SIGINT, which a process started in the
        // background of a non-interactive shell inherits as ignored, and this suite may run there): every
        // worker stops gracefully with exit code 0.
        foreach (var (worker, index) in _workers.Select((w, i) => (w, i)))
        {
            await CliProcess.SendTermAsync(worker);
            using var stopping = CancellationTokenSource.CreateLinkedTokenSource(ct);
            stopping.CancelAfter(GracefulStop);
            try
            {
                await worker.WaitForExitAsync(stopping.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                Assert.Fail($"worker {index} ({_workerLines[index]}) still running {GracefulStop.TotalSeconds} s after SIGTERM; stderr: {_workerErrors[index]}");
            }
            Assert.That(worker.ExitCode, Is.Zero, $"worker {index} after SIGTERM: {_workerErrors[index]}");
        }
    }

    private static void RequireSuccess(ReadmeStep step, ShellResult result)
    {
        if (result.ExitCode != 0)
            Assert.Fail($"README line failed with exit code {result.ExitCode}:\n  {step.Line}\nstdout: {result.Stdout}\nstderr: {result.Stderr}");
    }

    /// <summary>Starts a worker line as its own terminal would, and waits for its "ready" line.</summary>
    private async Task StartWorkerAsync(ReadmeStep step, string line, IReadOnlyDictionary<string, string> variables, CancellationToken ct)
    {
        var process = Bash("exec " + line, variables);
        var errors = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (errors) errors.AppendLine(e.Data);
        };
        process.Start();
        process.BeginErrorReadLine();
        _workers.Add(process);
        _workerLines.Add(step.Line);
        _workerErrors.Add(errors);
        while (await process.StandardOutput.ReadLineAsync(ct) is { } output)
            if (output.Contains(" ready: ", StringComparison.Ordinal))
            {
                // Keep draining its output so a chatty worker never blocks on a full pipe.
                _ = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
                return;
            }
        await process.WaitForExitAsync(ct);
        string text;
        lock (errors) text = errors.ToString();
        Assert.Fail($"README worker line exited with {process.ExitCode} before it was ready:\n  {step.Line}\nstderr: {text}");
    }

    private async Task<ShellResult> RunAsync(string script, IReadOnlyDictionary<string, string> variables, CancellationToken ct)
    {
        using var process = Bash(script, variables);
        process.Start();
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        return new ShellResult(process.ExitCode, await stdout, await stderr);
    }

    private Process Bash(string script, IReadOnlyDictionary<string, string> variables)
    {
        var info = new ProcessStartInfo("bash")
        {
            WorkingDirectory = _root,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        // The user's terminal: a home of its own (the client profile lives there) and the variables set so far.
        info.Environment["HOME"] = Path.Combine(_root, "home");
        foreach (var (name, value) in variables) info.Environment[name] = value;
        return new Process { StartInfo = info };
    }

    private sealed record ShellResult(int ExitCode, string Stdout, string Stderr);
}
