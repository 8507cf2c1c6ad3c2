using P2PInference.Tests.Shared;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace P2PInference.Benchmarks;

/// <summary>
/// js-libp2p against itself: <c>peer.mjs listen --bench-server</c> as the server and
/// <c>peer.mjs bench-client</c> runs (one process each) as the client, plus a second listening node
/// that holds idle connections and streams for the memory rows.
/// </summary>
internal sealed class JsPeerBenchmarks : IAsyncDisposable
{
    private readonly string _directory;
    private readonly JsNode _server;

    private JsPeerBenchmarks(string directory, JsNode server)
    {
        _directory = directory;
        _server = server;
    }

    /// <summary>Null (with the reason) when Node.js or the packages in tests/interop-js are missing.</summary>
    public static async Task<(JsPeerBenchmarks? Bench, string? Why)> TryStartAsync(CancellationToken ct)
    {
        var directory = (RepositoryPaths.IsInsideClone ? RepositoryPaths.InteropJs : null);
        if (directory is null) return (null, "tests/interop-js not found");
        if (!Directory.Exists(Path.Combine(directory, "node_modules", "libp2p")))
            return (null, $"js-libp2p not installed (run `npm ci` in {directory})");
        try
        {
            var server = await JsNode.StartAsync(directory, ["--bench-server"], ct);
            return (new JsPeerBenchmarks(directory, server), null);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return (null, "cannot start the js-libp2p peer: " + e.Message);
        }
    }

    private string Address => _server.Addrs[0];

    public async Task<double> ThroughputAsync(int mib, CancellationToken ct)
    {
        var r = await RunClientAsync(["--mode", "throughput", "--mib", Str(mib), "--chunk", "65536"], ct);
        return (double)r["MBps"]!;
    }

    /// <summary>p50 and p99 in microseconds, all round trips on one stream.</summary>
    public async Task<(double P50, double P99)> PingAsync(int count, CancellationToken ct)
    {
        var r = await RunClientAsync(["--mode", "ping", "--count", Str(count), "--one-stream"], ct);
        return ((double)r["p50"]! * 1000, (double)r["p99"]! * 1000);
    }

    /// <summary>Connections/s over <paramref name="count"/> sequential dial-and-close, after <paramref name="warmUp"/> unmeasured ones in the same process.</summary>
    public async Task<double> ConnectAsync(int count, int warmUp, CancellationToken ct)
    {
        var r = await RunClientAsync(["--mode", "connect", "--count", Str(count), "--warmup", Str(warmUp)], ct);
        return (double)r["handshakesPerSec"]!;
    }

    public async Task<double> RpcAsync(int concurrency, int seconds, int size, CancellationToken ct) =>
        (await RpcWithLatencyAsync(concurrency, seconds, size, ct)).CallsPerSecond;

    /// <summary>js request-response on a new stream per call: calls/s and p50/p99 in µs.</summary>
    public async Task<(double CallsPerSecond, double P50Micros, double P99Micros)> RpcWithLatencyAsync(int concurrency, int seconds, int size, CancellationToken ct)
    {
        var r = await RunClientAsync(["--mode", "echo", "--concurrency", Str(concurrency), "--seconds", Str(seconds), "--size", Str(size)], ct);
        if ((int)r["errors"]! > 0) throw new InvalidOperationException("js echo errors: " + r.ToJsonString());
        return ((double)r["callsPerSec"]!, (double)r["p50"]! * 1000, (double)r["p99"]! * 1000);
    }

    /// <summary>KiB per idle connection, both processes: (heap + external, RSS).</summary>
    public async Task<(double HeapKiB, double RssKiB)> IdleConnectionsAsync(int count, CancellationToken ct)
    {
        await using var holder = await JsNode.StartAsync(_directory, ["--bench-limits"], ct);
        var before = await BothAsync(holder, ct);
        await holder.SendAsync(new { cmd = "open-idle", addr = Address, connections = count }, ct);
        await Task.Delay(BenchSettings.Settle, ct);
        var after = await BothAsync(holder, ct);
        await holder.SendAsync(new { cmd = "close-idle" }, ct);
        return Per(before, after, count);
    }

    /// <summary>KiB per idle stream, both processes: (heap + external, RSS).</summary>
    public async Task<(double HeapKiB, double RssKiB)> IdleStreamsAsync(int connections, int perConnection, CancellationToken ct)
    {
        await using var holder = await JsNode.StartAsync(_directory, ["--bench-limits"], ct);
        await holder.SendAsync(new { cmd = "open-idle", addr = Address, connections }, ct);
        await Task.Delay(BenchSettings.Settle, ct);
        var before = await BothAsync(holder, ct);
        await holder.SendAsync(new { cmd = "idle-streams", perConnection }, ct);
        await Task.Delay(BenchSettings.Settle, ct);
        var after = await BothAsync(holder, ct);
        await holder.SendAsync(new { cmd = "close-idle" }, ct);
        return Per(before, after, connections * perConnection);
    }

    private async Task<(long Heap, long Rss)> BothAsync(JsNode holder, CancellationToken ct)
    {
        var a = await _server.SendAsync(new { cmd = "memory" }, ct);
        var b = await holder.SendAsync(new { cmd = "memory" }, ct);
        static long Heap(JsonNode m) => (long)m["heapUsed"]! + (long)m["external"]!;
        return (Heap(a) + Heap(b), (long)a["rss"]! + (long)b["rss"]!);
    }

    private static (double, double) Per((long Heap, long Rss) before, (long Heap, long Rss) after, int items) =>
        ((after.Heap - before.Heap) / 1024.0 / items, (after.Rss - before.Rss) / 1024.0 / items);

    private async Task<JsonNode> RunClientAsync(string[] arguments, CancellationToken ct)
    {
        var info = JsNode.StartInfo(_directory, ["peer.mjs", "bench-client", "--addr", Address, .. arguments]);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("node did not start");
        var stderr = process.StandardError.ReadToEndAsync(ct);
        var stdout = await process.StandardOutput.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        var line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (process.ExitCode != 0 || line is null)
            throw new InvalidOperationException($"peer.mjs bench-client {string.Join(' ', arguments)} exited {process.ExitCode}: {line}\n{await stderr}");
        return JsonNode.Parse(line)!;
    }

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    /// <summary>A <c>peer.mjs listen</c> process (with <c>--expose-gc</c>) driven by JSON lines.</summary>
    private sealed class JsNode : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _stderr;

        private JsNode(Process process, StringBuilder stderr, IReadOnlyList<string> addrs)
        {
            _process = process;
            _stderr = stderr;
            Addrs = addrs;
        }

        public IReadOnlyList<string> Addrs { get; }

        public static ProcessStartInfo StartInfo(string directory, IEnumerable<string> arguments)
        {
            var info = new ProcessStartInfo("node")
            {
                WorkingDirectory = directory,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in arguments) info.ArgumentList.Add(a);
            return info;
        }

        public static async Task<JsNode> StartAsync(string directory, IEnumerable<string> arguments, CancellationToken ct)
        {
            var process = Process.Start(StartInfo(directory, ["--expose-gc", "peer.mjs", "listen", .. arguments]))
                ?? throw new InvalidOperationException("node did not start");
            var stderr = new StringBuilder();
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                lock (stderr) stderr.AppendLine(e.Data);
            };
            process.BeginErrorReadLine();
            var line = await process.StandardOutput.ReadLineAsync(ct);
            if (line is null)
            {
                await process.WaitForExitAsync(ct);
                lock (stderr) throw new InvalidOperationException($"the js peer exited with {process.ExitCode}: {stderr}");
            }
            var ready = JsonNode.Parse(line)!;
            return new JsNode(process, stderr, ready["addrs"]!.AsArray().Select(a => (string)a!).ToArray());
        }

        public async Task<JsonNode> SendAsync(object command, CancellationToken ct)
        {
            await _process.StandardInput.WriteLineAsync(JsonSerializer.Serialize(command).AsMemory(), ct);
            await _process.StandardInput.FlushAsync(ct);
            var line = await _process.StandardOutput.ReadLineAsync(ct);
            if (line is null)
            {
                lock (_stderr) throw new InvalidOperationException("the js peer exited: " + _stderr);
            }
            var answer = JsonNode.Parse(line)!;
            if (answer["ok"] is { } ok && !(bool)ok!) throw new InvalidOperationException("js peer: " + (string?)answer["error"]);
            return answer;
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                _process.StandardInput.Close();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
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
        }
    }
}
