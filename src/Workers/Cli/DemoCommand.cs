using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Client;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Processor;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Workers.Cli;

/// <summary>
/// <c>p2pinference demo</c>: the whole network in one process on TCP loopback — real stack, real
/// DHT — a bootstrap node, Auth, a gateway and two processors with the builtin engine; then the
/// client journey (register, login, API key, a streamed and a unary inference) and a table of each
/// step's latency and the processor that served it. Data lives in a temp directory removed at exit.
/// </summary>
internal static class DemoCommand
{
    public const string DefaultPrompt = "The network";
    public const string Email = "demo@example.com";
    public const string Password = "demo-password-2024";

    private static readonly Multiaddress Loopback = Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");

    public static Command Create(TextWriter output, TextWriter error)
    {
        var prompt = new Option<string>("--prompt") { Description = "The text the model continues", DefaultValueFactory = _ => DefaultPrompt };
        var json = CliOptions.Json();
        var command = new Command("demo", "Start a whole network in this process and walk the client journey through it") { prompt, json };
        command.SetAction((result, ct) => RunAsync(result.GetValue(prompt) ?? DefaultPrompt, result.GetValue(json), output, error, ct));
        return command;
    }

    private static async Task<int> RunAsync(string prompt, bool json, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        void OnSignal(PosixSignalContext context)
        {
            // Stop the journey and clean up (temp data, sockets) instead of dying mid-way.
            context.Cancel = true;
            stop.Cancel();
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        var root = Path.Combine(Path.GetTempPath(), "p2pinference-demo-" + SystemRandomSource.Instance.NextHex(16));
        using var logging = CliNode.CreateLoggerFactory(LogLevel.Error);
        var demo = new Journey(root, logging, json ? TextWriter.Null : output);
        try
        {
            await demo.RunAsync(prompt, stop.Token);
            if (json) await output.WriteLineAsync(demo.ToJson(ok: true, failure: null));
            else await demo.PrintTableAsync(output);
            return 0;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var message = stop.IsCancellationRequested ? "interrupted" : CliErrors.Describe(e) ?? e.Message;
            var line = $"demo failed during '{demo.CurrentStep}': {message}";
            if (json) await output.WriteLineAsync(demo.ToJson(ok: false, failure: line));
            await error.WriteLineAsync("error: " + line);
            return CliErrors.Failure;
        }
        finally
        {
            await demo.DisposeAsync();
            TryDelete(root);
        }
    }

    private static void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Leaving a temp directory behind is not worth failing a successful demo over.
        }
    }

    private sealed record Step(string Name, double LatencyMs, string Detail);

    /// <summary>The nodes and the client of one demo run, and what each step took.</summary>
    private sealed class Journey(string root, ILoggerFactory logging, TextWriter live) : IAsyncDisposable
    {
        private readonly List<WorkerRuntime> _runtimes = [];

        // The demo is its own operator: one cluster key, and each worker signs its own grant with it.
        private readonly ClusterKey _cluster = ClusterKey.Generate(SystemRandomSource.Instance);
        private readonly List<Step> _steps = [];
        private readonly Dictionary<string, string> _processorNames = new(StringComparer.Ordinal);
        private readonly StringBuilder _streamed = new();
        private P2PInferenceClient? _client;

        public string CurrentStep { get; private set; } = "start";

        public async Task RunAsync(string prompt, CancellationToken ct)
        {
            await TimedAsync("start network", async () =>
            {
                var bootstrap = await StartAsync(WorkerRole.Bootstrap, "bootstrap", null, [], ct);
                var peers = new[] { bootstrap.Addresses[0] };
                var workers = await Task.WhenAll(
                    StartAsync(WorkerRole.Auth, "auth", new AuthWorker(new AuthOptions()), peers, ct),
                    StartAsync(WorkerRole.Gateway, "gateway", new GatewayWorker(new GatewayOptions()), peers, ct),
                    StartAsync(WorkerRole.Processor, "processor-1", Processor(), peers, ct),
                    StartAsync(WorkerRole.Processor, "processor-2", Processor(), peers, ct));
                _processorNames[workers[2].PeerId.ToString()] = "processor-1";
                _processorNames[workers[3].PeerId.ToString()] = "processor-2";
                await live.WriteLineAsync($"{"bootstrap",-11} {bootstrap.Addresses[0]}");
                foreach (var worker in workers)
                    await live.WriteLineAsync($"{NameOf(worker),-11} {worker.PeerId}");
                return "bootstrap, auth, gateway, 2 processors (builtin engine) on TCP loopback";
            });

            await TimedAsync("connect client", async () =>
            {
                _client = await P2PInferenceClient.ConnectAsync([_runtimes[0].Addresses[0]], new ClientOptions { LoggerFactory = logging, ClusterId = _cluster.Id }, ct);
                return "DHT client via the bootstrap node";
            });
            var client = _client!;

            await TimedAsync("register", async () => (await client.RegisterAsync(Email, Password, ct)).UserId);
            await TimedAsync("login", async () =>
            {
                var login = await client.LoginAsync(Email, Password, ct);
                return "token valid until " + DateTimeOffset.FromUnixTimeMilliseconds(login.ExpiresAtUnixMs).ToString("u", CultureInfo.InvariantCulture);
            });
            await TimedAsync("create API key", async () =>
            {
                var key = await client.CreateApiKeyAsync("demo", ct);
                return $"{key.KeyId} (…{key.ApiKey[^4..]})";
            });

            await live.WriteLineAsync();
            await live.WriteAsync($"prompt: {prompt}\n> {prompt}");
            await TimedAsync("stream inference", async () =>
            {
                var processor = "";
                var tokens = 0;
                double? firstTokenMs = null;
                var begin = TimeProvider.System.GetTimestamp();
                var request = new InferRequest { Prompt = prompt, Model = BuiltinEngineOptions.DefaultModelName, MaxTokens = 40, Temperature = 0.8, Seed = 7 };
                await foreach (var chunk in client.InferStreamAsync(request, ct))
                {
                    firstTokenMs ??= TimeProvider.System.GetElapsedTime(begin).TotalMilliseconds;
                    if (chunk.Text.Length > 0) tokens++;
                    if (chunk.Processor.Length > 0) processor = chunk.Processor;
                    _streamed.Append(chunk.Text);
                    await live.WriteAsync(chunk.Text);
                    await live.FlushAsync(ct);
                }

                await live.WriteLineAsync();
                return $"{Describe(processor)}, {tokens} tokens, first after {firstTokenMs ?? 0:0} ms";
            });

            await TimedAsync("infer (unary)", async () =>
            {
                var response = await client.InferAsync(new InferRequest { Prompt = prompt, Model = BuiltinEngineOptions.DefaultModelName, MaxTokens = 24, Seed = 8 }, ct);
                await live.WriteLineAsync($"> {prompt}{response.Text}");
                return $"{Describe(response.Processor)}, {response.Tokens} tokens";
            });
            await live.WriteLineAsync();
            CurrentStep = "done";
        }

        public async Task PrintTableAsync(TextWriter output)
        {
            var nameWidth = Math.Max("step".Length, _steps.Max(s => s.Name.Length));
            await output.WriteLineAsync($"{"step".PadRight(nameWidth)} | latency ms | detail");
            await output.WriteLineAsync($"{new string('-', nameWidth)}-|------------|-{new string('-', 40)}");
            foreach (var step in _steps)
            {
                var latency = step.LatencyMs.ToString("0.0", CultureInfo.InvariantCulture);
                await output.WriteLineAsync($"{step.Name.PadRight(nameWidth)} | {latency,10} | {step.Detail}");
            }

            await output.FlushAsync();
        }

        public string ToJson(bool ok, string? failure) => JsonSerializer.Serialize(new
        {
            ok,
            error = failure,
            steps = _steps.Select(s => new { step = s.Name, latencyMs = Math.Round(s.LatencyMs, 1), detail = s.Detail }),
            output = _streamed.ToString(),
            nodes = _runtimes.Select(r => new { role = NameOf(r), peerId = r.PeerId.ToString(), addrs = r.Addresses.Select(a => a.ToString()) }),
        });

        public async ValueTask DisposeAsync()
        {
            if (_client is not null) await _client.DisposeAsync();
            // Workers first and the bootstrap node last, so unannouncing still has a network.
            for (var i = _runtimes.Count - 1; i >= 0; i--) await _runtimes[i].DisposeAsync();
        }

        private async Task<string> TimedAsync(string name, Func<Task<string>> step)
        {
            CurrentStep = name;
            var begin = TimeProvider.System.GetTimestamp();
            var detail = await step();
            _steps.Add(new Step(name, TimeProvider.System.GetElapsedTime(begin).TotalMilliseconds, detail));
            return detail;
        }

        private async Task<WorkerRuntime> StartAsync(WorkerRole role, string name, IWorker? worker, IReadOnlyList<Multiaddress> bootstrap, CancellationToken ct)
        {
            var runtime = new WorkerRuntime(new WorkerRuntimeOptions
            {
                Role = role,
                DataDirectory = Path.Combine(root, name),
                ListenAddresses = [Loopback],
                BootstrapPeers = bootstrap,
                DrainTimeout = TimeSpan.FromSeconds(2),
                ClusterKey = worker is null ? null : _cluster,
                LoggerFactory = logging,
            }, worker);
            lock (_runtimes) _runtimes.Add(runtime);
            await runtime.StartAsync(ct);
            return runtime;
        }

        private static ProcessorWorker Processor() => new(new ProcessorOptions
        {
            // A short pause per token, so the stream is visibly a stream.
            Engine = new EngineOptions { TokenInterval = TimeSpan.FromMilliseconds(25), StopAtEndOfText = false },
        });

        private string NameOf(WorkerRuntime runtime) =>
            _processorNames.TryGetValue(runtime.PeerId.ToString(), out var name) ? name : WorkerRoles.NameOf(runtime.Role);

        private string Describe(string processor) =>
            _processorNames.TryGetValue(processor, out var name) ? $"{name} {Short(processor)}" : processor.Length > 0 ? Short(processor) : "processor unknown";

        private static string Short(string peerId) => PeerId.TryParse(peerId, out _) && peerId.Length > 16 ? peerId[..8] + "…" + peerId[^6..] : peerId;
    }
}
