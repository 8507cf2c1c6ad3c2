using System.Diagnostics;

namespace P2PInference.Tests.Shared;

/// <summary>
/// Makes sure the pinned js packages in tests/interop-js (the js-libp2p peer, the `openai` client)
/// are installed before a test starts them, so the README's test command needs no set-up step of its own: when
/// <c>node_modules</c> is missing, or older than <c>package-lock.json</c>, it runs <c>npm ci</c>
/// once per test run (a file lock keeps two test processes from installing at once). Only a
/// missing Node.js fails the interop tests, with a message that says so.
/// </summary>
internal static class JsPeerInstall
{
    private const int MinimumNodeMajor = 20;
    private static readonly TimeSpan InstallTimeout = TimeSpan.FromMinutes(10);
    private static readonly object Gate = new();
    private static string? _verified;

    /// <summary>The interop peer's directory, installed; fails the calling test when that is impossible.</summary>
    public static string EnsureInstalled()
    {
        lock (Gate)
        {
            if (_verified is not null) return _verified;
            var dir = RepositoryPaths.InteropJs;
            RequireNode();
            if (NeedsInstall(dir))
            {
                var installLock = AcquireInstallLock();
                try
                {
                    // Another test process may have installed it while this one waited for the lock.
                    if (NeedsInstall(dir)) RunNpmCi(dir);
                }
                finally
                {
                    installLock.ReleaseMutex();
                    installLock.Dispose();
                }
            }
            _verified = dir;
            return dir;
        }
    }

    /// <summary>True when the packages are absent or were installed from an older lock file.</summary>
    internal static bool NeedsInstall(string dir)
    {
        var installed = Path.Combine(dir, "node_modules", ".package-lock.json");
        if (!Directory.Exists(Path.Combine(dir, "node_modules", "libp2p")) || !Directory.Exists(Path.Combine(dir, "node_modules", "openai")) || !File.Exists(installed)) return true;
        return File.GetLastWriteTimeUtc(Path.Combine(dir, "package-lock.json")) > File.GetLastWriteTimeUtc(installed);
    }

    private static void RequireNode()
    {
        var (exitCode, output) = Run("node", ["-p", "process.versions.node"], Path.GetTempPath(), TimeSpan.FromSeconds(30));
        if (exitCode is null)
            Assert.Fail($"Node.js ≥ {MinimumNodeMajor} is required for the js-libp2p interop tests and `node` was not found on PATH ({output})");
        var version = output.Trim();
        if (exitCode != 0 || !int.TryParse(version.Split('.')[0], out var major) || major < MinimumNodeMajor)
            Assert.Fail($"Node.js ≥ {MinimumNodeMajor} is required for the js-libp2p interop tests; `node` reports '{version}' (exit {exitCode})");
    }

    /// <summary>A machine-wide mutex: two test processes (or two clones' runs) never install at once.</summary>
    private static Mutex AcquireInstallLock()
    {
        var mutex = new Mutex(initiallyOwned: false, "p2pinference-interop-js-npm-ci");
        try
        {
            if (!mutex.WaitOne(InstallTimeout))
                Assert.Fail($"another process held the interop peer's install lock for longer than {InstallTimeout}");
        }
        catch (AbandonedMutexException)
        {
            // The holder died mid-install; the lock is ours now and NeedsInstall decides again.
        }
        return mutex;
    }

    private static void RunNpmCi(string dir)
    {
        TestContext.Progress.WriteLine($"js-libp2p interop peer not installed: running `npm ci` in {dir} (once per run; needs the npm registry)");
        var (exitCode, output) = Run("npm", ["ci", "--no-audit", "--no-fund"], dir, InstallTimeout);
        if (exitCode != 0)
        {
            var tail = output.Length > 4000 ? output[^4000..] : output;
            Assert.Fail($"`npm ci` in {dir} failed (exit {exitCode?.ToString() ?? "npm not found"}):\n{tail}");
        }
        TestContext.Progress.WriteLine("js-libp2p interop peer installed");
    }

    /// <summary>Exit code and combined output; a null exit code when the program could not start.</summary>
    private static (int? ExitCode, string Output) Run(string program, string[] arguments, string workingDirectory, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException($"{program} did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (null, e.Message);
        }
        using (process)
        {
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                return (-1, $"{program} did not finish within {timeout}");
            }
            return (process.ExitCode, stdout.Result + stderr.Result);
        }
    }
}
