using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Client;
using P2PInference.Workers.Client.OpenAi;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Processor;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Benchmarks.Workers;

/// <summary>
/// The whole user path on TCP loopback with the real stack and DHT: N clients call infer through a
/// gateway (auth check, rate limit, processor choice) to two builtin-engine processors. The same
/// requests sent straight to a processor, in the same run, give the gateway's added latency.
/// </summary>
public static class GatewayBenchmark
{
    private static readonly Multiaddress Loopback = Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");

    // Workers sign their own grants with it; the client trusts its id; the direct caller holds a gateway grant of it.
    internal static readonly ClusterKey Cluster = ClusterKey.Generate(SystemRandomSource.Instance);

    public static async Task<string> RunAsync(int clients, TimeSpan duration, CancellationToken ct)
    {
        var root = Directory.CreateTempSubdirectory("p2pinference-bench-").FullName;
        try
        {
            // One cluster at a time: the paced one runs after the first has stopped, so neither's background work is in the other's CPU.
            var unpaced = await UnpacedAsync(clients, duration, root, ct);
            return unpaced + Environment.NewLine + await PacedAsync(clients, duration, root, ct);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task<string> UnpacedAsync(int clients, TimeSpan duration, string root, CancellationToken ct)
    {
        var runtimes = new List<WorkerRuntime>();
        try
        {
            var cluster = await StartClusterAsync(runtimes, root, grantChecksOff: false, ct);
            await using var client = cluster.Client;
            var processors = cluster.Processors;

            await using var directCaller = await DirectCaller.ConnectAsync(processors, ct);
            var direct = directCaller.Client;
            // `client serve` in front of the same client: one request at a time, so the difference is what serve adds per request.
            await using var serve = await OpenAiServer.StartAsync(new IPEndPoint(IPAddress.Loopback, 0), client, NullLoggerFactory.Instance, ct);
            using var http = new HttpClient { BaseAddress = new Uri(serve.Address + "/") };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", client.ApiKey);

            Task ViaGateway(int i) => client.InferAsync(Request(i), ct);
            Task Straight(int i) =>
                direct.RequestAsync(processors[i % processors.Length].PeerId, WorkerMethods.Processor.Infer, Request(i), InferResponse.Parser, null, ct);
            // The same requests streamed token by token: the gateway relays the processor's chunks (coalescing those already received).
            async Task ViaGatewayStreamed(int i)
            {
                await foreach (var _ in client.InferStreamAsync(Request(i), ct))
                {
                }
            }
            async Task StraightStreamed(int i)
            {
                await foreach (var _ in direct.RequestStreamAsync(processors[i % processors.Length].PeerId, WorkerMethods.Processor.InferStream, Request(i),
                                   InferChunk.Parser, null, ct))
                {
                }
            }
            async Task Serve(int i)
            {
                using var body = new StringContent(
                    $$"""{"model":"{{BuiltinEngineOptions.DefaultModelName}}","prompt":"The network","max_tokens":16,"temperature":0.8,"seed":{{i}}}""",
                    Encoding.UTF8, "application/json");
                using var response = await http.PostAsync("completions", body, ct);
                response.EnsureSuccessStatusCode();
                await response.Content.ReadAsByteArrayAsync(ct);
            }
            // One RPC hop with a trivial handler, to split the gateway's extra CPU into the hop and its own work.
            var statusRequest = new StatusRequest();
            Task Hop(int i) =>
                direct.RequestAsync(processors[i % processors.Length].PeerId, WorkerMethods.Processor.Status, statusRequest, StatusResponse.Parser, null, ct);
            // The client's own hop to the gateway through the SDK (topic call, grant check, credential-free), on a method the
            // gateway answers from its cache: what the gateway path adds besides it is the gateway's own work.
            Task SdkHop(int _) => client.ModelsAsync(ct);

            var warmUp = await WarmUpAsync(clients, [ViaGateway, Straight, ViaGatewayStreamed, StraightStreamed, Hop, SdkHop], [Serve], ct);
            var viaGateway = await MeasureAsync(clients, duration, ViaGateway, ct);
            var straight = await MeasureAsync(clients, duration, Straight, ct);
            var sdkOne = await MeasureAsync(1, duration, ViaGateway, ct);
            var serveOne = await MeasureAsync(1, duration, Serve, ct);
            var viaGatewayStreamed = await MeasureAsync(clients, duration, ViaGatewayStreamed, ct);
            var straightStreamed = await MeasureAsync(clients, duration, StraightStreamed, ct);
            var hop = await MeasureAsync(clients, duration, Hop, ct);
            var sdkHop = await MeasureAsync(clients, duration, SdkHop, ct);

            var text = new StringBuilder();
            text.AppendLine(CultureInfo.InvariantCulture, $"{clients} concurrent clients for {duration.TotalSeconds:0} s each, builtin engine, 16 tokens per request");
            text.AppendLine(warmUp.ToString());
            text.AppendLine();
            text.AppendLine(TableHeader);
            Row(text, "client -> gateway -> processor", viaGateway);
            Row(text, "client -> processors (direct)", straight);
            Row(text, "streamed: client -> gateway -> processor", viaGatewayStreamed);
            Row(text, "streamed: client -> processors (direct)", straightStreamed);
            Row(text, "one RPC hop (processor status)", hop);
            Row(text, "SDK -> gateway hop (models, cached)", sdkHop);
            Row(text, "SDK, one client (c=1)", sdkOne);
            Row(text, "client serve HTTP -> SDK (c=1)", serveOne);
            Errors(text, ("client -> gateway -> processor", viaGateway), ("client -> processors (direct)", straight),
                ("streamed: client -> gateway -> processor", viaGatewayStreamed), ("streamed: client -> processors (direct)", straightStreamed),
                ("one RPC hop (processor status)", hop), ("SDK -> gateway hop (models, cached)", sdkHop), ("SDK, one client (c=1)", sdkOne),
                ("client serve HTTP -> SDK (c=1)", serveOne));
            text.AppendLine();
            text.AppendLine(CultureInfo.InvariantCulture,
                $"client serve's added latency per request (c=1, /v1/completions over the same SDK client): p50 {serveOne.P50 - sdkOne.P50:0.00} ms, p99 {serveOne.P99 - sdkOne.P99:0.00} ms");
            text.AppendLine(CultureInfo.InvariantCulture,
                $"gateway's added latency: p50 {viaGateway.P50 - straight.P50:0.00} ms, p99 {viaGateway.P99 - straight.P99:0.00} ms; requests/s {viaGateway.PerSecond / straight.PerSecond:0.00}x of direct (both spread over the same two processors)");
            text.AppendLine(CultureInfo.InvariantCulture,
                $"streamed: gateway's added latency p50 {viaGatewayStreamed.P50 - straightStreamed.P50:0.00} ms, p99 {viaGatewayStreamed.P99 - straightStreamed.P99:0.00} ms; requests/s {viaGatewayStreamed.PerSecond / straightStreamed.PerSecond:0.00}x of direct");
            text.AppendLine(CultureInfo.InvariantCulture,
                $"CPU (all workers in this process): the gateway path costs {viaGateway.CpuMicros - straight.CpuMicros:0} µs more per request, of which one RPC hop is {hop.CpuMicros:0} µs");
            // The gateway path is the client's hop to the gateway, the gateway's work, and the direct call (its hop to the processor
            // and the processor's work). The rest is the gateway's code and whatever a hop costs more at the path's lower request
            // rate (fewer requests share each thread wake-up and each spin of the thread pool than in the hop row).
            var rest = viaGateway.CpuMicros - straight.CpuMicros - sdkHop.CpuMicros;
            text.AppendLine(CultureInfo.InvariantCulture,
                $"CPU split of the gateway path ({viaGateway.CpuMicros:0} µs/req): direct call {straight.CpuMicros:0} + client->gateway hop {sdkHop.CpuMicros:0} + rest (gateway code, hop cost at the lower rate) {rest:0} µs; with a free gateway this setup tops out at {straight.CpuMicros / (straight.CpuMicros + sdkHop.CpuMicros):0.00}x of direct");
            text.AppendLine(CultureInfo.InvariantCulture,
                $"allocated per request: gateway path {viaGateway.AllocatedBytes / 1024:0.0} KiB, direct {straight.AllocatedBytes / 1024:0.0} KiB, streamed via gateway {viaGatewayStreamed.AllocatedBytes / 1024:0.0} KiB, streamed direct {straightStreamed.AllocatedBytes / 1024:0.0} KiB, one hop {hop.AllocatedBytes / 1024:0.0} KiB (all workers in this process)");
            return text.ToString();
        }
        finally
        {
            for (var i = runtimes.Count - 1; i >= 0; i--) await runtimes[i].DisposeAsync();
        }
    }

    /// <summary>Per-token engine time as a model takes it (the builtin engine waits it out; it costs no CPU).</summary>
    private static readonly TimeSpan PacedTokenInterval = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// The rows above put the processors' engine at almost no cost, so the gateway's hop is compared with
    /// next to nothing. Here the engine takes <see cref="PacedTokenInterval"/> per token, as a model does
    /// (waited, not computed, as a model's time is spent on other cores or a GPU): the same gateway's
    /// throughput and added latency against the same processors called directly.
    /// </summary>
    private static async Task<string> PacedAsync(int clients, TimeSpan duration, string root, CancellationToken ct)
    {
        var runtimes = new List<WorkerRuntime>();
        try
        {
            var cluster = await StartClusterAsync(runtimes, Path.Combine(root, "paced"), grantChecksOff: false, ct, PacedTokenInterval);
            await using var client = cluster.Client;
            var processors = cluster.Processors;
            await using var directCaller = await DirectCaller.ConnectAsync(processors, ct);
            var direct = directCaller.Client;

            Task Gateway(int i) => client.InferAsync(Request(i), ct);
            Task Direct(int i) => direct.RequestAsync(processors[i % processors.Length].PeerId, WorkerMethods.Processor.Infer, Request(i), InferResponse.Parser, null, ct);
            var warmUp = await WarmUpAsync(clients, [Gateway, Direct], [], ct);
            var viaGateway = await MeasureAsync(clients, duration, Gateway, ct);
            var straight = await MeasureAsync(clients, duration, Direct, ct);

            var text = new StringBuilder();
            text.AppendLine(CultureInfo.InvariantCulture,
                $"The same with an engine that takes {PacedTokenInterval.TotalMilliseconds:0.#} ms per token (waited, not computed: a model's time is not this process's CPU)");
            text.AppendLine(warmUp.ToString());
            text.AppendLine();
            text.AppendLine(TableHeader);
            Row(text, "paced: client -> gateway -> processor", viaGateway);
            Row(text, "paced: client -> processors (direct)", straight);
            Errors(text, ("paced: client -> gateway -> processor", viaGateway), ("paced: client -> processors (direct)", straight));
            text.AppendLine();
            text.AppendLine(CultureInfo.InvariantCulture,
                $"paced: gateway's added latency p50 {viaGateway.P50 - straight.P50:0.00} ms, p99 {viaGateway.P99 - straight.P99:0.00} ms; requests/s {viaGateway.PerSecond / straight.PerSecond:0.00}x of direct");
            return text.ToString();
        }
        finally
        {
            for (var i = runtimes.Count - 1; i >= 0; i--) await runtimes[i].DisposeAsync();
        }
    }

    /// <summary>
    /// A node of its own connected to every processor, holding a gateway grant: processors serve granted
    /// gateways only, so the direct caller is one, checking the processors' grants as a gateway does.
    /// </summary>
    private sealed class DirectCaller : IAsyncDisposable
    {
        private readonly P2PHost _host;
        private readonly RpcNode _node;

        private DirectCaller(P2PHost host, RpcNode node, TrustedRpcClient client) => (_host, _node, Client) = (host, node, client);

        public TrustedRpcClient Client { get; }

        public static async Task<DirectCaller> ConnectAsync(WorkerRuntime[] processors, CancellationToken ct)
        {
            var identity = KeyPair.Generate();
            var host = new P2PHost(new HostOptions { Identity = identity, Transports = [new TcpTransport()] });
            var node = new RpcNode(host);
            var grant = Cluster.Issue(identity.PeerId, GrantRole.Gateway, TimeProvider.System.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance);
            var caller = new DirectCaller(host, node,
                new TrustedRpcClient(node, new GrantVerifier(Cluster.Id, TimeProvider.System), WorkerTrust.RoleOfMethod, new HeldGrant(grant)));
            try
            {
                foreach (var processor in processors)
                    await host.ConnectAsync(processor.Addresses[0].WithPeerId(processor.PeerId), ct);
                return caller;
            }
            catch
            {
                await caller.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _node.DisposeAsync();
            await _host.DisposeAsync();
        }
    }

    /// <summary>
    /// A bootstrap node, Auth, a gateway and two builtin-engine processors under <paramref name="root"/>, and a
    /// client signed up through them holding an API key. <paramref name="grantChecksOff"/>: the workers present
    /// their grants but check none (the grant-cost benchmark's baseline); the client checks the gateway's either way.
    /// </summary>
    internal static async Task<(P2PInferenceClient Client, WorkerRuntime[] Processors)> StartClusterAsync(List<WorkerRuntime> runtimes, string root,
        bool grantChecksOff, CancellationToken ct, TimeSpan tokenInterval = default)
    {
        var bootstrap = await StartAsync(runtimes, root, WorkerRole.Bootstrap, "bootstrap", null, [], grantChecksOff, ct);
        var peers = new[] { bootstrap.Addresses[0] };
        // Quotas high enough that the benchmark measures serving, not the rate limiter.
        var auth = new AuthOptions { PasswordIterations = 1_000, DefaultQuota = new AuthQuota { RequestsPerMinute = 10_000_000, Burst = 100_000 } };
        var processorOptions = new ProcessorOptions { MaxConcurrency = 8, MaxQueue = 1024, Engine = new EngineOptions { TokenInterval = tokenInterval } };
        var workers = await Task.WhenAll(
            StartAsync(runtimes, root, WorkerRole.Auth, "auth", new AuthWorker(auth), peers, grantChecksOff, ct),
            // The per-peer limit only applies to calls without a key (models, account calls): high enough for the SDK hop row.
            StartAsync(runtimes, root, WorkerRole.Gateway, "gateway", new GatewayWorker(new GatewayOptions { DefaultRateLimit = new RateLimitQuota(10_000_000, 100_000) }),
                peers, grantChecksOff, ct),
            StartAsync(runtimes, root, WorkerRole.Processor, "processor-1", new ProcessorWorker(processorOptions), peers, grantChecksOff, ct),
            StartAsync(runtimes, root, WorkerRole.Processor, "processor-2", new ProcessorWorker(processorOptions), peers, grantChecksOff, ct));

        var client = await P2PInferenceClient.ConnectAsync(peers, new ClientOptions { ClusterId = Cluster.Id }, ct);
        try
        {
            await client.RegisterAsync("bench@example.com", "a long benchmark passphrase 123", ct);
            await client.LoginAsync("bench@example.com", "a long benchmark passphrase 123", ct);
            await client.CreateApiKeyAsync("bench", ct);
            return (client, workers[2..]);
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    internal static InferRequest Request(int i) => new()
    {
        Model = BuiltinEngineOptions.DefaultModelName,
        Prompt = "The network",
        MaxTokens = 16,
        Temperature = 0.8,
        Seed = i,
    };

    private const string TableHeader = """
        | path                                     | requests/s | p50 ms | p99 ms | CPU µs/req | JIT µs/req | errors |
        |------------------------------------------|-----------:|-------:|-------:|-----------:|-----------:|-------:|
        """;

    private static void Row(StringBuilder text, string path, Result r) => text.AppendLine(CultureInfo.InvariantCulture,
        $"| {path,-40} | {r.PerSecond,10:0.0} | {r.P50,6:0.00} | {r.P99,6:0.00} | {r.CpuMicros,10:0} | {r.JitMicros,10:0} | {r.Errors,6} |");

    /// <param name="JitMicros">Time the JIT compiled during the row, per request: it is in the row's CPU, and should be next to nothing after the warm-up.</param>
    /// <param name="FirstError">What the first failed call said, so an errors count is not left unexplained.</param>
    private sealed record Result(double PerSecond, double P50, double P99, double CpuMicros, double JitMicros, int Errors, double AllocatedBytes,
        string? FirstError);

    private static void Errors(StringBuilder text, params (string Path, Result Result)[] rows)
    {
        foreach (var (path, r) in rows)
            if (r.FirstError is { } error) text.AppendLine(CultureInfo.InvariantCulture, $"{path}: {r.Errors} errors, the first: {error}");
    }

    /// <summary>Warms every path up (see <see cref="JitWarmUp"/>) in rounds of half a second each; <paramref name="single"/> paths run with one client, as their rows do.</summary>
    private static Task<JitWarmUp.Result> WarmUpAsync(int clients, Func<int, Task>[] paths, Func<int, Task>[] single, CancellationToken ct) =>
        JitWarmUp.UntilSettledAsync(async () =>
        {
            var round = TimeSpan.FromMilliseconds(500);
            foreach (var path in paths) await MeasureAsync(clients, round, path, ct);
            foreach (var path in single) await MeasureAsync(1, round, path, ct);
        }, ct);

    private static async Task<Result> MeasureAsync(int clients, TimeSpan duration, Func<int, Task> call, CancellationToken ct)
    {
        for (var i = 0; i < 20; i++) await call(i);
        var samples = new List<double>[clients];
        var errors = 0;
        string? firstError = null;
        using var process = Process.GetCurrentProcess();
        var cpuBefore = process.TotalProcessorTime;
        var allocatedBefore = GC.GetTotalAllocatedBytes();
        var jitBefore = JitInfo.GetCompilationTime();
        var start = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
        {
            var mine = samples[c] = [];
            var i = c * 1_000_000;
            while (Stopwatch.GetElapsedTime(start) < duration && !ct.IsCancellationRequested)
            {
                var t = Stopwatch.GetTimestamp();
                try
                {
                    await call(i++);
                    mine.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }
                catch (RpcException e)
                {
                    Interlocked.Increment(ref errors);
                    Interlocked.CompareExchange(ref firstError, $"{e.Code}: {e.Message}", null);
                }
            }
        }));
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        process.Refresh();
        var cpu = (process.TotalProcessorTime - cpuBefore).TotalMicroseconds;
        var allocated = GC.GetTotalAllocatedBytes() - allocatedBefore;
        var jit = (JitInfo.GetCompilationTime() - jitBefore).TotalMicroseconds;
        var all = samples.SelectMany(s => s).Order().ToArray();
        double Percentile(double p) => all.Length == 0 ? double.NaN : all[Math.Clamp((int)Math.Ceiling(p / 100 * all.Length) - 1, 0, all.Length - 1)];
        return new Result(all.Length / seconds, Percentile(50), Percentile(99), all.Length == 0 ? double.NaN : cpu / all.Length,
            all.Length == 0 ? double.NaN : jit / all.Length, errors, all.Length == 0 ? double.NaN : (double)allocated / all.Length, firstError);
    }

    private static async Task<WorkerRuntime> StartAsync(List<WorkerRuntime> runtimes, string root, WorkerRole role, string name, IWorker? worker,
        IReadOnlyList<Multiaddress> bootstrap, bool grantChecksOff, CancellationToken ct)
    {
        var runtime = new WorkerRuntime(new WorkerRuntimeOptions
        {
            Role = role,
            DataDirectory = Path.Combine(root, name),
            ListenAddresses = [Loopback],
            BootstrapPeers = bootstrap,
            DrainTimeout = TimeSpan.FromSeconds(2),
            ClusterKey = worker is null ? null : Cluster,
            GrantChecksOffForBenchmark = grantChecksOff,
        }, worker);
        lock (runtimes) runtimes.Add(runtime);
        await runtime.StartAsync(ct);
        return runtime;
    }
}
