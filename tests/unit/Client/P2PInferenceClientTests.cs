using System.Runtime.CompilerServices;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Client;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Client;

/// <summary>The SDK against a fake gateway on the RPC twin and mock DHT; each test a simulation, on its virtual clock.</summary>
public sealed class P2PInferenceClientTests
{
    private SimulationExecutor _sim = null!;
    private SimulationClock _time = null!;
    private InMemoryRpcNetwork _network = null!;
    private MockDhtRegistry _registry = null!;
    private FakeGateway _gateway = null!;
    private readonly List<IAsyncDisposable> _owned = [];

    /// <summary>Runs <paramref name="body"/> as a simulation with an announced gateway, then disposes what the test made.</summary>
    private void Run(Func<Task> body) => SimulationTest.Run(async sim =>
    {
        _sim = sim;
        _time = sim.Clock;
        _network = new InMemoryRpcNetwork(_time);
        _registry = new MockDhtRegistry(_time, sim.Seed);
        _gateway = new FakeGateway(_network, _registry, "gw");
        await _gateway.AnnounceAsync();
        try
        {
            await body();
        }
        finally
        {
            foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
            _owned.Clear();
            await _gateway.DisposeAsync();
        }
    });

    private P2PInferenceClient CreateClient(ClientOptions? options = null)
    {
        // Peer ids decide the DHT's and the balancer's tie-breaks: from the seed, so a printed seed replays.
        var peer = KeyPair.FromRandom(_sim.CreateRandom("client identity", _owned.Count.ToString(System.Globalization.CultureInfo.InvariantCulture))).PeerId;
        var dht = _registry.CreateNode(peer, []);
        var node = _network.CreateNode(peer, discovery: dht);
        var client = new P2PInferenceClient(node, (options ?? new ClientOptions()) with { ClusterId = options?.ClusterId ?? FakeGateway.Cluster.Id, TimeProvider = _time, Random = _sim.CreateRandom("client", _owned.Count.ToString(System.Globalization.CultureInfo.InvariantCulture)) });
        _owned.Add(dht);
        _owned.Add(node);
        _owned.Add(client);
        return client;
    }

    private static async Task<RpcException> FailureOf(Task call)
    {
        try
        {
            await call;
        }
        catch (RpcException e)
        {
            return e;
        }
        Assert.Fail("the call succeeded");
        throw new InvalidOperationException();
    }

    [Test]
    public void Login_KeepsTheToken_AndAccountCallsCarryItAsBearer() => Run(async () =>
    {
        var client = CreateClient();

        var login = await client.LoginAsync("ann@example.com", "right", CancellationToken.None);
        var keys = await client.ListApiKeysAsync(CancellationToken.None);
        var created = await client.CreateApiKeyAsync("laptop", CancellationToken.None);
        await client.RevokeApiKeyAsync("k1", CancellationToken.None);

        Assert.That(client.Token, Is.EqualTo(FakeGateway.Token).And.EqualTo(login.Token));
        Assert.That(keys.Single().KeyId, Is.EqualTo("k1"));
        Assert.That(client.ApiKey, Is.EqualTo(FakeGateway.ApiKey).And.EqualTo(created.ApiKey));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Login).Single().Authorization, Is.Null, "no credential before logging in");
        foreach (var method in new[] { WorkerMethods.Gateway.ListApiKeys, WorkerMethods.Gateway.CreateApiKey, WorkerMethods.Gateway.RevokeApiKey })
            Assert.That(_gateway.CallsOf(method).Single().Authorization, Is.EqualTo("Bearer " + FakeGateway.Token), method);
    });

    [Test]
    public void Register_SendsTheAccountAndNoCredential() => Run(async () =>
    {
        var client = CreateClient();

        var response = await client.RegisterAsync(" Ann@Example.com ", "pw", CancellationToken.None);

        Assert.That(response.Email, Is.EqualTo("ann@example.com"));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Register).Single().Authorization, Is.Null);
    });

    [Test]
    public void Login_WrongPassword_IsUnauthenticated_AndKeepsNoToken() => Run(async () =>
    {
        var client = CreateClient();

        var error = await FailureOf(client.LoginAsync("ann@example.com", "wrong", CancellationToken.None));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(client.Token, Is.Null);
    });

    [Test]
    public void AccountCalls_WithoutLogin_AreUnauthenticated_WithoutReachingTheGateway() => Run(async () =>
    {
        var client = CreateClient();

        var error = await FailureOf(client.ListApiKeysAsync(CancellationToken.None));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(_gateway.Calls, Is.Empty);
    });

    [Test]
    public void Infer_CarriesTheApiKey_AndNamesTheRequest() => Run(async () =>
    {
        var client = CreateClient(new ClientOptions { ApiKey = "sk-1", Token = "tok" });

        var response = await client.InferAsync(new InferRequest { Model = "builtin-small", Prompt = "hi there" }, CancellationToken.None);

        var call = _gateway.CallsOf(WorkerMethods.Gateway.Infer).Single();
        Assert.That(response.Text, Is.EqualTo("HI THERE"));
        Assert.That(call.Authorization, Is.EqualTo("ApiKey sk-1"), "the API key wins over the token for inference");
        Assert.That(response.RequestId, Is.Not.Empty);
        Assert.That(call.RpcRequestId, Is.EqualTo(response.RequestId), "the request id names the RPC call too, so logs line up");
    });

    [Test]
    public void Infer_WithOnlyAToken_SendsItAsBearer() => Run(async () =>
    {
        var client = CreateClient(new ClientOptions { Token = "tok" });

        await client.InferAsync(new InferRequest { Model = "m", Prompt = "p", RequestId = "mine" }, CancellationToken.None);

        var call = _gateway.CallsOf(WorkerMethods.Gateway.Infer).Single();
        Assert.That(call.Authorization, Is.EqualTo("Bearer tok"));
        Assert.That(((InferRequest)call.Request).RequestId, Is.EqualTo("mine"));
    });

    [Test]
    public void Infer_WithoutAnyCredential_IsUnauthenticated() => Run(async () =>
    {
        var client = CreateClient();

        var error = await FailureOf(client.InferAsync(new InferRequest { Model = "m", Prompt = "p" }, CancellationToken.None));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(_gateway.Calls, Is.Empty);
    });

    [Test]
    public void Models_RetriesOnUnavailable_WithGrowingJitteredBackoff_OnTheFakeClock() => Run(async () =>
    {
        var failures = 2;
        _gateway.Handle(WorkerMethods.Gateway.Models, ModelsRequest.Parser, (_, _) => Interlocked.Decrement(ref failures) >= 0
            ? throw new RpcException(RpcStatusCode.Unavailable, "restarting")
            : new ModelsResponse { Models = { new ModelInfo { Name = "m" } } });
        var client = CreateClient(new ClientOptions { InitialBackoff = TimeSpan.FromMilliseconds(200), MaxBackoff = TimeSpan.FromSeconds(2) });

        var call = client.ModelsAsync(CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(5));
        var models = await call;

        var at = _gateway.CallsOf(WorkerMethods.Gateway.Models).Select(c => c.At).ToArray();
        Assert.That(models.Single().Name, Is.EqualTo("m"));
        Assert.That(at, Has.Length.EqualTo(3));
        Assert.That(at[1] - at[0], Is.InRange(TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(200)), "first backoff: 200 ms with equal jitter");
        Assert.That(at[2] - at[1], Is.InRange(TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(400)), "second backoff doubles");
    });

    [Test]
    public void Models_GivesUpAfterMaxAttempts_WithTheLastError() => Run(async () =>
    {
        _gateway.Handle<ModelsRequest, ModelsResponse>(WorkerMethods.Gateway.Models, ModelsRequest.Parser,
            (_, _) => throw new RpcException(RpcStatusCode.Unavailable, "down"));
        var client = CreateClient(new ClientOptions { MaxAttempts = 3 });

        var call = client.ModelsAsync(CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(30));
        var error = await FailureOf(call);

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Models), Has.Length.EqualTo(3));
    });

    [Test]
    public void Retry_WaitsAtLeastTheServersRetryAfter() => Run(async () =>
    {
        var failures = 1;
        _gateway.Handle(WorkerMethods.Gateway.ListApiKeys, Workers.Contracts.Auth.ListApiKeysRequest.Parser, (_, _) =>
            Interlocked.Decrement(ref failures) >= 0
                ? throw RpcException.WithRetryAfter(RpcStatusCode.Unavailable, "draining", TimeSpan.FromSeconds(3))
                : new Workers.Contracts.Auth.ListApiKeysResponse());
        var client = CreateClient(new ClientOptions { Token = "tok" });

        var call = client.ListApiKeysAsync(CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(10));
        await call;

        var at = _gateway.CallsOf(WorkerMethods.Gateway.ListApiKeys).Select(c => c.At).ToArray();
        Assert.That(at[1] - at[0], Is.EqualTo(TimeSpan.FromSeconds(3)));
    });

    [Test]
    public void Infer_IsNotRetried_OnUnavailable_SinceItCouldRunTwice() => Run(async () =>
    {
        _gateway.Handle<InferRequest, InferResponse>(WorkerMethods.Gateway.Infer, InferRequest.Parser,
            (_, _) => throw new RpcException(RpcStatusCode.Unavailable, "lost the processor"));
        var client = CreateClient(new ClientOptions { ApiKey = "k" });

        var error = await FailureOf(client.InferAsync(new InferRequest { Model = "m", Prompt = "p" }, CancellationToken.None));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Infer), Has.Length.EqualTo(1));
    });

    [Test]
    public void InferStream_YieldsTheChunksInOrder_WithTheApiKey() => Run(async () =>
    {
        var client = CreateClient(new ClientOptions { ApiKey = "k" });

        var chunks = new List<InferChunk>();
        await foreach (var chunk in client.InferStreamAsync(new InferRequest { Model = "m", Prompt = "one two three" }, CancellationToken.None))
            chunks.Add(chunk);

        Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo("one two three"));
        Assert.That(chunks[^1].FinishReason, Is.EqualTo("stop"));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.InferStream).Single().Authorization, Is.EqualTo("ApiKey k"));
    });

    [Test]
    public void InferStream_FailingMidway_DeliversWhatCameThenAnErrorWithThePartialOutput() => Run(async () =>
    {
        _gateway.HandleStream(WorkerMethods.Gateway.InferStream, (r, _) => Broken(r));
        var client = CreateClient(new ClientOptions { ApiKey = "k" });

        var texts = new List<string>();
        var error = await FailureOf(ReadAll());

        Assert.That(texts, Is.EqualTo(new[] { "Hel", "lo" }));
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(P2PInferenceClient.PartialOutputOf(error), Is.EqualTo("Hello"));

        async Task ReadAll()
        {
            await foreach (var chunk in client.InferStreamAsync(new InferRequest { Model = "m", Prompt = "p" }, CancellationToken.None))
                texts.Add(chunk.Text);
        }

        static async IAsyncEnumerable<InferChunk> Broken(InferRequest request, [EnumeratorCancellation] CancellationToken ct = default)
        {
            await Task.Yield();
            yield return new InferChunk { Text = "Hel", Index = 0 };
            yield return new InferChunk { Text = "lo", Index = 1 };
            throw new RpcException(RpcStatusCode.Unavailable, "the processor went away",
                new Dictionary<string, string> { [WorkerMethods.PartialOutputDetail] = "Hello" });
        }
    });

    [Test]
    public void InferStream_AfterAGatewayWentAway_TheNextStreamsGoToTheOneThatAnswers() => Run(async () =>
    {
        await using var second = new FakeGateway(_network, _registry, "gw2");
        await second.AnnounceAsync();
        var client = CreateClient(new ClientOptions { ApiKey = "k" });
        await StreamAsync();
        // The gateway goes away but its record stays in the DHT, as a crashed node's does until it expires.
        var gone = _gateway.CallsOf(WorkerMethods.Gateway.InferStream).Length == 1 ? _gateway : second;
        var alive = ReferenceEquals(gone, _gateway) ? second : _gateway;
        await gone.Node.DisposeAsync();
        var servedBefore = alive.CallsOf(WorkerMethods.Gateway.InferStream).Length;

        var failures = 0;
        for (var i = 0; i < 8; i++)
        {
            try
            {
                await StreamAsync();
            }
            catch (RpcException e) when (e.Code == RpcStatusCode.Unavailable)
            {
                failures++;
            }
        }

        // At most the first stream may still try the gone gateway; after that the client no longer picks it.
        Assert.That(failures, Is.LessThanOrEqualTo(1));
        Assert.That(alive.CallsOf(WorkerMethods.Gateway.InferStream).Length - servedBefore, Is.EqualTo(8 - failures));

        async Task StreamAsync()
        {
            await foreach (var _ in client.InferStreamAsync(new InferRequest { Model = "m", Prompt = "one two" }, CancellationToken.None))
            {
            }
        }
    });

    [Test]
    public void InferStream_WithNoGatewayOnTheNetwork_IsUnavailable() => Run(async () =>
    {
        await _gateway.Dht.UnannounceAsync(WorkerTopics.Gateway, CancellationToken.None);
        var client = CreateClient(new ClientOptions { ApiKey = "k" });

        var error = await FailureOf(Drain());

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        // As a unary call says it: the topic names what is missing.
        Assert.That(error.Message, Does.Contain($"no provider of topic '{WorkerTopics.Gateway}'"));

        async Task Drain()
        {
            await foreach (var _ in client.InferStreamAsync(new InferRequest { Model = "m", Prompt = "p" }, CancellationToken.None))
            {
            }
        }
    });

    [Test]
    public void Cancel_AsksEveryGateway_AndSaysWhetherOneWasRunningIt() => Run(async () =>
    {
        await using var second = new FakeGateway(_network, _registry, "gw2");
        await second.AnnounceAsync();
        var client = CreateClient(new ClientOptions { ApiKey = "k" });

        var cancelled = await client.CancelAsync("running", CancellationToken.None);
        var unknown = await client.CancelAsync("other", CancellationToken.None);

        Assert.That(cancelled, Is.True);
        Assert.That(unknown, Is.False);
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Cancel), Has.Length.EqualTo(2));
        Assert.That(second.CallsOf(WorkerMethods.Gateway.Cancel), Has.Length.EqualTo(2));
        Assert.That(second.CallsOf(WorkerMethods.Gateway.Cancel)[0].Authorization, Is.EqualTo("ApiKey k"));
    });

    [Test]
    public void Options_Invalid_AreRejected()
    {
        var rpc = NSubstitute.Substitute.For<IRpcClient>();

        Assert.That(() => new P2PInferenceClient(rpc, new ClientOptions { MaxAttempts = 0 }), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => new P2PInferenceClient(rpc, new ClientOptions { MaxBackoff = TimeSpan.Zero }),
            Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void ConnectAsync_WithoutBootstrapPeers_IsRejected()
    {
        Assert.That(() => P2PInferenceClient.ConnectAsync([], new ClientOptions(), CancellationToken.None), Throws.ArgumentException);
        Assert.That(() => P2PInferenceClient.ConnectAsync([Facilities.Addressing.Multiaddress.Parse("/ip4/127.0.0.1/tcp/1")], null, CancellationToken.None),
            Throws.InstanceOf<FormatException>());
    }
}
