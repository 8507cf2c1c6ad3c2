using System.Net;
using System.Runtime.CompilerServices;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Harness;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Client;
using P2PInference.Workers.Client.OpenAi;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Processor;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.E2E.OpenAi;

/// <summary>
/// The real workers in this process on TCP loopback (the real stack and DHT, as the demo runs them):
/// bootstrap, Auth, a gateway and two processors whose builtin engine takes a short pause per token
/// and tells when a generation is cancelled. Each user gets a quota of <see cref="Burst"/> inference
/// requests at once, so a test can run into the rate limit with a user of its own.
/// </summary>
internal sealed class ServeNetwork : IAsyncDisposable
{
    public const string Model = BuiltinEngineOptions.DefaultModelName;
    public const int Burst = 6;

    private readonly List<WorkerRuntime> _runtimes = [];
    private readonly TestDataFactory _data = new();
    private readonly string _root;

    private ServeNetwork(string root, CancellationObservingEngine engine)
    {
        _root = root;
        Engine = engine;
    }

    public CancellationObservingEngine Engine { get; }

    /// <summary>Every worker's and the clients' log lines, for a test to show when it gives up waiting.</summary>
    public RecordedLog Log { get; } = new();

    public Multiaddress Bootstrap => _runtimes[0].Addresses[0];

    /// <summary>The network's cluster: its workers sign their own grants with this key; clients check them against its id.</summary>
    public static ClusterKey Cluster { get; } = ClusterKey.Generate(SystemRandomSource.Instance);

    public static async Task<ServeNetwork> StartAsync(CancellationToken ct)
    {
        var engine = new CancellationObservingEngine(new BuiltinEngine(new BuiltinEngineOptions
        {
            StopAtEndOfText = false,
            TokenInterval = TimeSpan.FromMilliseconds(10),
        }));
        var network = new ServeNetwork(Directory.CreateTempSubdirectory("p2pinference-serve-").FullName, engine);
        try
        {
            var bootstrap = await network.StartAsync(WorkerRole.Bootstrap, "bootstrap", null, [], ct);
            var peers = new[] { bootstrap.Addresses[0] };
            await network.StartAsync(WorkerRole.Auth, "auth", new AuthWorker(new AuthOptions
            {
                PasswordIterations = AuthOptions.MinPasswordIterations,
                DefaultQuota = new AuthQuota { RequestsPerMinute = 1, Burst = Burst },
            }), peers, ct);
            await network.StartAsync(WorkerRole.Gateway, "gateway", new GatewayWorker(new GatewayOptions { DefaultModel = Model }), peers, ct);
            await network.StartAsync(WorkerRole.Processor, "processor-1", new ProcessorWorker(new ProcessorOptions(), engine), peers, ct);
            await network.StartAsync(WorkerRole.Processor, "processor-2", new ProcessorWorker(new ProcessorOptions(), engine), peers, ct);
            return network;
        }
        catch
        {
            await network.DisposeAsync();
            throw;
        }
    }

    /// <summary>A client joined through the bootstrap node, signed up as a fresh user with an API key.</summary>
    public async Task<P2PInferenceClient> SignedUpClientAsync(CancellationToken ct)
    {
        var client = await P2PInferenceClient.ConnectAsync([Bootstrap], new ClientOptions { ClusterId = Cluster.Id, LoggerFactory = Log }, ct);
        TestUser user;
        lock (_data) user = _data.User();
        await client.RegisterAsync(user.Email, user.Password, ct);
        await client.LoginAsync(user.Email, user.Password, ct);
        await client.CreateApiKeyAsync("serve", ct);
        // Inference with the key only, as a profile that holds an API key does.
        client.Token = null;
        return client;
    }

    /// <summary>The API key of a fresh user: a full quota of its own.</summary>
    public async Task<string> NewApiKeyAsync(CancellationToken ct)
    {
        await using var client = await SignedUpClientAsync(ct);
        return client.ApiKey!;
    }

    /// <summary>`client serve` over <paramref name="client"/> on a free loopback port.</summary>
    public Task<OpenAiServer> ServeAsync(P2PInferenceClient client, CancellationToken ct) =>
        OpenAiServer.StartAsync(new IPEndPoint(IPAddress.Loopback, 0), client, Log, ct);

    public async ValueTask DisposeAsync()
    {
        for (var i = _runtimes.Count - 1; i >= 0; i--) await _runtimes[i].DisposeAsync();
        Engine.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private async Task<WorkerRuntime> StartAsync(WorkerRole role, string name, IWorker? worker, IReadOnlyList<Multiaddress> bootstrap, CancellationToken ct)
    {
        var runtime = new WorkerRuntime(new WorkerRuntimeOptions
        {
            Role = role,
            DataDirectory = Path.Combine(_root, name),
            ListenAddresses = [Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")],
            BootstrapPeers = bootstrap,
            DrainTimeout = TimeSpan.FromSeconds(2),
            LoggerFactory = Log,
            ClusterKey = role == WorkerRole.Bootstrap ? null : Cluster,
        }, worker);
        _runtimes.Add(runtime);
        await runtime.StartAsync(ct);
        return runtime;
    }
}

/// <summary>An engine that completes <see cref="CancelledAsync"/> when a generation of the given prompt is cancelled by its caller.</summary>
internal sealed class CancellationObservingEngine(IInferenceEngine inner) : IInferenceEngine
{
    private readonly Dictionary<string, TaskCompletionSource> _cancelled = new(StringComparer.Ordinal);

    public string Kind => inner.Kind;

    public IReadOnlyList<ModelInfo> Models => inner.Models;

    public Task InitializeAsync(CancellationToken cancellationToken) => inner.InitializeAsync(cancellationToken);

    /// <summary>Completes when a generation whose input ends with <paramref name="marker"/> is cancelled on a processor.</summary>
    public Task CancelledAsync(string marker)
    {
        lock (_cancelled)
        {
            if (!_cancelled.TryGetValue(marker, out var source))
                _cancelled[marker] = source = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return source.Task;
        }
    }

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(InferenceRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // Seen when the generation ends with its token cancelled, not from a callback on the token: the
        // inner engine's own registration runs first and can unwind this enumeration inside the same
        // Cancel(), disposing a registration of ours before its turn, so it never ran (a repetition run
        // showed the processor logging the cancel while this engine had not noticed it).
        try
        {
            await foreach (var token in inner.GenerateAsync(request, cancellationToken)) yield return token;
            // A watched generation never ends on its own: on a loaded machine the cancel can take longer
            // to cross two hops than the engine takes to produce every token, and a generation that had
            // finished could no longer see it.
            if (WatchersOf(request).Count > 0) await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
        }
        finally
        {
            if (cancellationToken.IsCancellationRequested)
                foreach (var source in WatchersOf(request)) source.TrySetResult();
        }
    }

    /// <summary>The signals of the markers <paramref name="request"/>'s input ends with.</summary>
    private List<TaskCompletionSource> WatchersOf(InferenceRequest request)
    {
        var input = request.ToPromptText();
        lock (_cancelled) return [.. _cancelled.Where(p => input.EndsWith(p.Key, StringComparison.Ordinal)).Select(p => p.Value)];
    }

    public void Dispose() => inner.Dispose();
}

/// <summary>A <see cref="ServeNetwork"/> with a signed-up client and <c>client serve</c> in front of it: what an endpoint fixture starts once.</summary>
internal sealed class ServedNetwork : IAsyncDisposable
{
    private ServedNetwork(ServeNetwork network, P2PInferenceClient client, OpenAiServer server)
    {
        Network = network;
        Client = client;
        Server = server;
    }

    public ServeNetwork Network { get; }
    public P2PInferenceClient Client { get; }
    public OpenAiServer Server { get; }

    public static async Task<ServedNetwork> StartAsync(CancellationToken ct)
    {
        var network = await ServeNetwork.StartAsync(ct);
        P2PInferenceClient? client = null;
        try
        {
            client = await network.SignedUpClientAsync(ct);
            return new ServedNetwork(network, client, await network.ServeAsync(client, ct));
        }
        catch
        {
            if (client is not null) await client.DisposeAsync();
            await network.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        await Client.DisposeAsync();
        await Network.DisposeAsync();
    }
}
