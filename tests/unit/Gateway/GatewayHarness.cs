using NSubstitute;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.TestKit;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Gateway;

/// <summary>
/// A gateway worker on the RPC twin with a mock DHT and fake time, a client node, and fake Auth and
/// processors announced under their topics. One per test.
/// </summary>
internal sealed class GatewayHarness : IAsyncDisposable
{
    private readonly List<MockDht> _dhts = [];
    private readonly int _seed;
    // Peer ids decide the picker's tie-breaks and the DHT's order, so they come from the test's seed too.
    private readonly Random _identities;

    private GatewayHarness(GatewayOptions options, FakeTimeProvider? time, Func<InMemoryRpcNode, IRpcClient>? clientOf)
    {
        _seed = SimulationExecutor.Current?.Seed ?? TestSeed.Choose();
        _identities = SimulationExecutor.Current?.CreateRandom("gateway-harness", "identity") ?? new Random(_seed);
        Time = time ?? new FakeTimeProvider();
        Network = new InMemoryRpcNetwork(Time);
        Registry = new MockDhtRegistry(Time, _seed);
        Options = options;
        Worker = new GatewayWorker(options);
        var identity = KeyPair.FromRandom(_identities);
        GatewayDht = Registry.CreateNode(identity.PeerId, []);
        _dhts.Add(GatewayDht);
        GatewayNode = Network.CreateNode(identity.PeerId, new RpcOptions { Random = new Random(_seed) }, GatewayDht);
        Context = new WorkerContext
        {
            Identity = identity,
            Server = GatewayNode,
            Client = clientOf?.Invoke(GatewayNode) ?? GatewayNode,
            Discovery = GatewayDht,
            Store = Substitute.For<IKeyValueStore>(),
            Time = Time,
            Random = new Random(_seed),
        };
        Client = Network.CreateNode();
    }

    public FakeTimeProvider Time { get; }
    public InMemoryRpcNetwork Network { get; }
    public MockDhtRegistry Registry { get; }
    public GatewayOptions Options { get; }
    public GatewayWorker Worker { get; }
    public MockDht GatewayDht { get; }
    public InMemoryRpcNode GatewayNode { get; }
    public WorkerContext Context { get; }
    public InMemoryRpcNode Client { get; }
    public FakeAuth Auth { get; private set; } = null!;
    public InMemoryRpcNode AuthNode { get; private set; } = null!;
    public string ApiKey { get; private set; } = "";

    public static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    /// <summary>
    /// A started gateway with a fake Auth (unless <paramref name="withAuth"/> is false) holding one API key, <see cref="ApiKey"/>,
    /// on <paramref name="time"/>: a simulation's clock for a test that waits on timers, else a manual clock nothing waits on.
    /// </summary>
    /// <param name="clientOf">What the gateway calls others through, made of its node (say, a trust layer); the node itself by default.</param>
    /// <param name="authServerOf">What the fake Auth serves through, made of its node (say, a trust layer); the node itself by default.</param>
    public static async Task<GatewayHarness> StartAsync(GatewayOptions? options = null, bool withAuth = true, FakeTimeProvider? time = null,
        Func<InMemoryRpcNode, IRpcClient>? clientOf = null, Func<InMemoryRpcNode, IRpcServer>? authServerOf = null)
    {
        var harness = new GatewayHarness(options ?? new GatewayOptions(), time, clientOf);
        var topics = await harness.Worker.StartAsync(harness.Context, Token);
        foreach (var topic in topics) await harness.GatewayDht.AnnounceAsync(topic, Token);
        if (withAuth)
        {
            harness.AuthNode = await harness.AddNodeAsync(WorkerTopics.Auth);
            harness.Auth = new FakeAuth(authServerOf?.Invoke(harness.AuthNode) ?? harness.AuthNode);
            harness.ApiKey = harness.Auth.AddApiKey();
        }
        return harness;
    }

    /// <summary>A processor serving <paramref name="models"/> (default "m1"), announced under the processor and model topics.</summary>
    public Task<FakeProcessor> AddProcessorAsync(params string[] models) => AddProcessorAsync(node => node, models);

    /// <summary>As <see cref="AddProcessorAsync(string[])"/>, its methods registered through what <paramref name="serverOf"/> makes of its node (say, a <see cref="DrainingRpcServer"/>).</summary>
    public async Task<FakeProcessor> AddProcessorAsync(Func<InMemoryRpcNode, IRpcServer> serverOf, params string[] models)
    {
        if (models.Length == 0) models = ["m1"];
        var node = await AddNodeAsync([WorkerTopics.Processor, .. models.Select(WorkerTopics.Model)]);
        return new FakeProcessor(node, serverOf(node), models);
    }

    public async Task<InMemoryRpcNode> AddNodeAsync(params string[] topics)
    {
        var peer = KeyPair.FromRandom(_identities).PeerId;
        var dht = Registry.CreateNode(peer, []);
        _dhts.Add(dht);
        var node = Network.CreateNode(peer, discovery: dht);
        foreach (var topic in topics) await dht.AnnounceAsync(topic, Token);
        return node;
    }

    public static RpcCallOptions As(string? credential, RpcCallOptions? options = null) =>
        (options ?? new RpcCallOptions()) with
        {
            Metadata = credential is null ? null : new Dictionary<string, string> { [WorkerMethods.AuthorizationMetadata] = credential },
        };

    public string KeyCredential => "ApiKey " + ApiKey;

    public async Task<TResponse> CallAsync<TRequest, TResponse>(string method, TRequest request, MessagePackRpcCodec<TResponse> parser, string? credential = null,
        RpcCallOptions? options = null)
        where TRequest : class
        where TResponse : class =>
        parser.Decode(await Client.RequestAsync(GatewayNode.PeerId, method, MessagePackRpcCodec<TRequest>.Instance.Encode(request), As(credential, options), Token));

    public Task<byte[]> CallRawAsync(string method, byte[] payload, string? credential = null) =>
        Client.RequestAsync(GatewayNode.PeerId, method, payload, As(credential), Token);

    public Task<InferResponse> InferAsync(InferRequest request, string? credential = null, RpcCallOptions? options = null) =>
        CallAsync(WorkerMethods.Gateway.Infer, request, InferResponse.Parser, credential ?? KeyCredential, options);

    public IAsyncEnumerable<InferChunk> StreamAsync(InferRequest request, string? credential = null, RpcCallOptions? options = null,
        CancellationToken cancellationToken = default) =>
        Client.RequestStreamAsync(GatewayNode.PeerId, WorkerMethods.Gateway.InferStream, request, InferChunk.Parser, As(credential ?? KeyCredential, options),
            cancellationToken == default ? Token : cancellationToken);

    public async Task<List<InferChunk>> StreamAllAsync(InferRequest request, string? credential = null, RpcCallOptions? options = null)
    {
        var chunks = new List<InferChunk>();
        await foreach (var chunk in StreamAsync(request, credential, options)) chunks.Add(chunk);
        return chunks;
    }

    public static InferRequest Prompt(string prompt = "Say hello", string model = "m1", string requestId = "") =>
        new() { Model = model, Prompt = prompt, MaxTokens = 16, RequestId = requestId };

    /// <summary>The error a call ends with; fails the test when it succeeds.</summary>
    public static Task<RpcException> ErrorOf(Func<Task> call) => Support.RpcTestCalls.ErrorOf(call);

    public async ValueTask DisposeAsync()
    {
        await Worker.StopAsync(CancellationToken.None);
        foreach (var node in Network.Nodes) await node.DisposeAsync();
        foreach (var dht in _dhts) await dht.DisposeAsync();
    }
}
