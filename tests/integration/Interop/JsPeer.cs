using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

using P2PInference.Tests.Shared;

namespace P2PInference.Tests.Integration.Interop;

/// <summary>
/// A js-libp2p node (tests/interop-js/peer.mjs) in a child process, driven by JSON lines: one
/// command on stdin, one answer on stdout. Missing Node.js or packages fail the test, never skip it.
/// </summary>
internal sealed class JsPeer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly SemaphoreSlim _gate = new(1, 1);

    private JsPeer(Process process, string peerId, IReadOnlyList<string> addrs)
    {
        _process = process;
        PeerId = peerId;
        Addrs = addrs;
    }

    public string PeerId { get; }
    public IReadOnlyList<string> Addrs { get; }
    public string Diagnostics
    {
        get
        {
            lock (_stderr) return _stderr.ToString();
        }
    }

    public static async Task<JsPeer> StartAsync(IEnumerable<string> arguments, CancellationToken cancellationToken)
    {
        var process = StartNode(["peer.mjs", "listen", .. arguments]);
        var stderr = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (stderr) stderr.AppendLine(e.Data);
        };
        process.BeginErrorReadLine();
        string? line;
        try
        {
            line = await process.StandardOutput.ReadLineAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // A peer that never gets ready says why on stderr, if anywhere; a bare cancellation says nothing.
            string text;
            lock (stderr) text = stderr.ToString();
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It exited meanwhile.
            }
            process.Dispose();
            throw new TimeoutException($"the js-libp2p peer was not ready before the test's deadline; its stderr:\n{text}");
        }
        if (line is null)
        {
            await process.WaitForExitAsync(cancellationToken);
            string text;
            lock (stderr) text = stderr.ToString();
            throw new InvalidOperationException($"the js-libp2p peer exited with {process.ExitCode} before it was ready:\n{text}");
        }
        var ready = JsonNode.Parse(line)!;
        var peer = new JsPeer(process, (string)ready["peerId"]!, ready["addrs"]!.AsArray().Select(a => (string)a!).ToArray());
        lock (stderr) peer._stderr.Append(stderr);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (peer._stderr) peer._stderr.AppendLine(e.Data);
        };
        return peer;
    }

    /// <summary>Runs <c>node peer.mjs ARGS</c> to completion and returns its one JSON line (bench-client).</summary>
    public static async Task<JsonNode> RunOnceAsync(IEnumerable<string> arguments, CancellationToken cancellationToken)
    {
        using var process = StartNode(["peer.mjs", .. arguments]);
        var stderrTask = process.StandardError.ReadToEndAsync(cancellationToken);
        var stdout = await process.StandardOutput.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (process.ExitCode != 0 || line is null)
            throw new InvalidOperationException($"node peer.mjs {string.Join(' ', arguments)} exited {process.ExitCode}:\n{await stderrTask}");
        return JsonNode.Parse(line)!;
    }

    /// <summary>Sends one command and returns its answer; an answer with ok=false throws.</summary>
    public async Task<JsonNode> SendAsync(object command, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await _process.StandardInput.WriteLineAsync(JsonSerializer.Serialize(command).AsMemory(), cancellationToken);
            await _process.StandardInput.FlushAsync(cancellationToken);
            var line = await _process.StandardOutput.ReadLineAsync(cancellationToken)
                ?? throw new InvalidOperationException("the js-libp2p peer exited:\n" + Diagnostics);
            var answer = JsonNode.Parse(line)!;
            if (answer["ok"] is { } ok && !(bool)ok!)
                throw new JsPeerException((string?)answer["error"] ?? line);
            return answer;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Starts <c>node</c> in tests/interop-js (installing its packages first) with stdin, stdout and stderr redirected.</summary>
    internal static Process StartNode(IEnumerable<string> arguments)
    {
        var dir = JsPeerInstall.EnsureInstalled();
        var info = new ProcessStartInfo("node")
        {
            WorkingDirectory = dir,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        try
        {
            return Process.Start(info) ?? throw new InvalidOperationException("node did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail($"Node.js is required for the interop tests and was not found: {e.Message}");
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (IOException)
        {
        }
        _process.Dispose();
        _gate.Dispose();
    }
}

internal sealed class JsPeerException(string message) : Exception(message);
