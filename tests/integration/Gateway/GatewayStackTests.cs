using System.Runtime.CompilerServices;
using NSubstitute;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.TestKit;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Network;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Integration.Gateway;

/// <summary>
/// The gateway on the real RPC stack (RpcNode over P2PHost: Noise, Yamux) over the in-memory
/// network, with a mock DHT for discovery and fake Auth and processors: the addresses of every
/// peer are learnt from discovery only, as in a deployment.
/// </summary>
[CancelAfter(30_000)]
public sealed class GatewayStackTests
{
    private const string ApiKey = "pk_integration_secret";
    private readonly List<IAsyncDisposable> _owned = [];
    private FakeTimeProvider _time = null!;
    private InMemoryNetwork _network = null!;
    private MockDhtRegistry _registry = null!;
    private int _seed;
    private Random _keys = null!;

    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    [SetUp]
    public void SetUp()
    {
        _seed = TestSeed.Choose();
        _time = new FakeTimeProvider();
        _network = new InMemoryNetwork(_time, _seed);
        _registry = new MockDhtRegistry(_time, _seed);
        // Peer ids from the test's seed too: they decide the picker's tie-breaks and the DHT's order.
        _keys = new Random(_seed);
    }

    [TearDown]
    public async Task TearDownAsync()
    {
        foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
        _owned.Clear();
    }

    private sealed record Peer(string Name, KeyPair Identity, P2PHost Host, RpcNode Rpc, MockDht Dht);

    private async Task<Peer> StartPeerAsync(string name, params string[] topics)
    {
        var identity = KeyPair.FromRandom(_keys);
        var host = new P2PHost(new HostOptions
        {
            Identity = identity,
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _time,
            Yamux = new YamuxOptions { KeepAliveInterval = null },
        });
        _owned.Add(host);
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], Token);
        var dht = _registry.CreateNode(host.PeerId, host.AdvertisedAddresses);
        _owned.Add(dht);
        var rpc = new RpcNode(host, new RpcOptions { TimeProvider = _time, Random = new Random(_seed) }, dht);
        _owned.Add(rpc);
        foreach (var topic in topics) await dht.AnnounceAsync(topic, Token);
        return new Peer(name, identity, host, rpc, dht);
    }

    private async Task<Peer> StartGatewayAsync()
    {
        var peer = await StartPeerAsync("gateway");
        var worker = new GatewayWorker(new GatewayOptions());
        var context = new WorkerContext
        {
            Identity = peer.Identity,
            Server = peer.Rpc,
            Client = peer.Rpc,
            Discovery = peer.Dht,
            Store = Substitute.For<IKeyValueStore>(),
            Time = _time,
            Random = new Random(_seed),
        };
        foreach (var topic in await worker.StartAsync(context, Token)) await peer.Dht.AnnounceAsync(topic, Token);
        _owned.Add(new StopOnDispose(worker));
        return peer;
    }

    private async Task StartAuthAsync()
    {
        var auth = await StartPeerAsync("auth", WorkerTopics.Auth);
        auth.Rpc.Respond<ValidateRequest, ValidateResponse>(WorkerMethods.Auth.Validate, ValidateRequest.Parser, (request, _) =>
            request.ApiKey == ApiKey
                ? ValueTask.FromResult(new ValidateResponse { UserId = "user-1", KeyId = "key-1", Quota = new Quota { RequestsPerMinute = 600, Burst = 10 } })
                : throw new RpcException(RpcStatusCode.Unauthenticated, "unknown key"));
    }

    private async Task<(Peer Peer, Func<int> Calls)> StartProcessorAsync(string name, string model, bool failing = false)
    {
        var peer = await StartPeerAsync(name, WorkerTopics.Processor, WorkerTopics.Model(model));
        var calls = 0;
        peer.Rpc.Respond<StatusRequest, StatusResponse>(WorkerMethods.Processor.Status, StatusRequest.Parser, (_, _) =>
            ValueTask.FromResult(new StatusResponse { MaxConcurrency = 1, Models = { new ModelInfo { Name = model, MaxTokens = 64 } } }));
        peer.Rpc.RespondStreaming<InferRequest, InferChunk>(WorkerMethods.Processor.InferStream, InferRequest.Parser, (request, context) =>
        {
            Interlocked.Increment(ref calls);
            return failing ? Fail() : Words(request, context.CancellationToken);
        });
        return (peer, () => Volatile.Read(ref calls));

        static async IAsyncEnumerable<InferChunk> Fail()
        {
            await Task.Yield();
            throw new RpcException(RpcStatusCode.Unavailable, "engine not loaded");
#pragma warning disable CS0162 // an iterator needs a yield to be one
            yield break;
#pragma warning restore CS0162
        }

        static async IAsyncEnumerable<InferChunk> Words(InferRequest request, [EnumeratorCancellation] CancellationToken ct)
        {
            var words = request.Prompt.Split(' ');
            for (var i = 0; i < words.Length; i++)
            {
                await Task.Yield();
                ct.ThrowIfCancellationRequested();
                yield return new InferChunk { RequestId = request.RequestId, Text = (i == 0 ? "" : " ") + words[i].ToUpperInvariant(), Index = i,
                    FinishReason = i == words.Length - 1 ? "stop" : "" };
            }
        }
    }

    /// <summary>The client finds a gateway by topic, as the Client worker does, and streams through it.</summary>
    private async Task<List<InferChunk>> StreamThroughGatewayAsync(Peer client, InferRequest request)
    {
        var gateways = await client.Dht.LookupAsync(WorkerTopics.Gateway, Token);
        var gateway = gateways.Single();
        client.Host.PeerStore.AddAddresses(gateway.PeerId, gateway.Addresses);
        var options = new RpcCallOptions
        {
            Timeout = TimeSpan.FromMinutes(1),
            Metadata = new Dictionary<string, string> { [WorkerMethods.AuthorizationMetadata] = "ApiKey " + ApiKey },
        };
        var chunks = new List<InferChunk>();
        await foreach (var chunk in client.Rpc.RequestStreamAsync(gateway.PeerId, WorkerMethods.Gateway.InferStream, request, InferChunk.Parser, options, Token))
            chunks.Add(chunk);
        return chunks;
    }

    [Test]
    public async Task StreamingInference_EndToEnd_ThroughGatewayAuthAndProcessor()
    {
        await StartAuthAsync();
        var (processor, calls) = await StartProcessorAsync("processor-1", "echo");
        await StartGatewayAsync();
        var client = await StartPeerAsync("client");

        var chunks = await StreamThroughGatewayAsync(client, new InferRequest { Model = "echo", Prompt = "the quick brown fox", RequestId = "e2e-1" });

        Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo("THE QUICK BROWN FOX"));
        Assert.That(chunks.Last().FinishReason, Is.EqualTo("stop"));
        Assert.That(chunks.Select(c => c.RequestId).Distinct(), Is.EqualTo(new[] { "e2e-1" }));
        Assert.That(chunks.Select(c => c.Processor).Distinct(), Is.EqualTo(new[] { processor.Host.PeerId.ToString() }));
        Assert.That(calls(), Is.EqualTo(1));
    }

    [Test]
    public async Task StreamingInference_FailsOverToTheOtherProcessor_OnTheRealStack()
    {
        await StartAuthAsync();
        var (_, failingCalls) = await StartProcessorAsync("processor-bad", "echo", failing: true);
        var (_, goodCalls) = await StartProcessorAsync("processor-good", "echo");
        await StartGatewayAsync();
        var client = await StartPeerAsync("client");

        for (var i = 0; i < 3; i++)
        {
            var chunks = await StreamThroughGatewayAsync(client, new InferRequest { Model = "echo", Prompt = "hello there" });
            Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo("HELLO THERE"));
        }

        Assert.That(goodCalls(), Is.EqualTo(3));
        Assert.That(failingCalls(), Is.LessThanOrEqualTo(1), "a failing processor is avoided after it failed");
    }

    private sealed class StopOnDispose(GatewayWorker worker) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await worker.StopAsync(CancellationToken.None);
    }
}
