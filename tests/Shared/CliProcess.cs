using System.Diagnostics;

namespace P2PInference.Tests.Shared;

/// <summary>Runs the real <c>p2pinference</c> executable (copied next to the tests) as a child process.</summary>
internal sealed class CliProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Task<string> _stderr;

    private CliProcess(Process process)
    {
        _process = process;
        _stderr = process.StandardError.ReadToEndAsync();
    }

    public StreamReader Output => _process.StandardOutput;

    public int Id => _process.Id;

    public static CliProcess Start(params string[] arguments)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "p2pinference.dll"));
        foreach (var a in arguments) info.ArgumentList.Add(a);
        return new CliProcess(Process.Start(info) ?? throw new InvalidOperationException("could not start p2pinference"));
    }

    /// <summary>Runs a command to completion, with nothing on standard input.</summary>
    public static Task<CliResult> RunAsync(CancellationToken cancellationToken, params string[] arguments) =>
        RunWithInputAsync(cancellationToken, null, arguments);

    /// <summary>Runs a command to completion, with <paramref name="input"/> (a line, if any) on standard input.</summary>
    public static async Task<CliResult> RunWithInputAsync(CancellationToken cancellationToken, string? input, params string[] arguments)
    {
        await using var process = Start(arguments);
        var stdout = process.Output.ReadToEndAsync(cancellationToken);
        if (input is not null) await process._process.StandardInput.WriteLineAsync(input.AsMemory(), cancellationToken);
        process._process.StandardInput.Close();
        var exitCode = await process.WaitForExitAsync(cancellationToken);
        return new CliResult(exitCode, await stdout, await process._stderr);
    }

    /// <summary>Sends SIGTERM, as a service manager would, and returns the exit code.</summary>
    public async Task<int> TerminateAsync(CancellationToken cancellationToken)
    {
        await SendTermAsync(_process);
        return await WaitForExitAsync(cancellationToken);
    }

    public async Task<int> WaitForExitAsync(CancellationToken cancellationToken)
    {
        await _process.WaitForExitAsync(cancellationToken);
        return _process.ExitCode;
    }

    public Task<string> StandardErrorAsync() => _stderr;

    // Long enough for a worker's drain and for coverlet's exit handler to write its hits under load.
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(30);

    public async ValueTask DisposeAsync()
    {
        await StopAsync(_process);
        _process.Dispose();
    }

    /// <summary>
    /// Stops a child still running: SIGTERM, then SIGKILL only if it outlives <see cref="StopGrace"/>.
    /// A SIGKILL straight away could land in an instrumented child's exit, inside coverlet's hits-file
    /// mutex: the next child to exit then died of an AbandonedMutexException (exit 134) in a full run.
    /// </summary>
    public static async Task StopAsync(Process process)
    {
        if (process.HasExited) return;
        await SendTermAsync(process);
        using var grace = new CancellationTokenSource(StopGrace);
        try
        {
            await process.WaitForExitAsync(grace.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    /// <summary>Sends SIGTERM, as a service manager (or `kill -TERM`) would.</summary>
    public static async Task SendTermAsync(Process process)
    {
        using var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync();
    }
}

internal sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public string[] StdoutLines => Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    public string[] StderrLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
