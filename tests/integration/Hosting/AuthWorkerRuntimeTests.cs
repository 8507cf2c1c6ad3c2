using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Network;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Integration.Hosting;

/// <summary>
/// The runtime on the real stack (Noise, Yamux, Kademlia, RPC, FASTER on disk) over the in-memory
/// network: a bootstrap node, the Auth worker, and a client that finds Auth by its DHT topic.
/// </summary>
[CancelAfter(60_000)]
public sealed class AuthWorkerRuntimeTests
{
    private const string Password = "integration password 1";

    private readonly List<IAsyncDisposable> _owned = [];
    private InMemoryNetwork _network = null!;
    private string _root = null!;

    [SetUp]
    public void SetUp()
    {
        _network = new InMemoryNetwork();
        _root = Path.Combine(Path.GetTempPath(), "p2pinference-runtime-it-" + Guid.NewGuid().ToString("N"));
    }

    [TearDown]
    public async Task TearDown()
    {
        foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
        _owned.Clear();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Test]
    public async Task AuthWorker_BecomesReady_AndServesAClientThatFindsItByTopic(CancellationToken ct)
    {
        var bootstrap = await StartAsync(WorkerRole.Bootstrap, "bootstrap", [], ct);
        var auth = await StartAsync(WorkerRole.Auth, "auth", [bootstrap.Addresses[0]], ct);
        Assert.That(auth.IsReady, Is.True);
        Assert.That(auth.Ready.IsCompletedSuccessfully, Is.True);
        Assert.That(auth.Topics, Is.EqualTo(new[] { WorkerTopics.Auth }));

        var client = await ClientAsync("client-1", bootstrap, ct);
        var registered = await Call(client, WorkerMethods.Auth.Register, new RegisterRequest { Email = "eve@example.com", Password = Password }, RegisterResponse.Parser, ct);
        var login = await Call(client, WorkerMethods.Auth.Login, new LoginRequest { Email = "eve@example.com", Password = Password }, LoginResponse.Parser, ct);

        Assert.That(login.UserId, Is.EqualTo(registered.UserId));
        Assert.That(login.Token, Is.Not.Empty);
    }

    [Test]
    public async Task AuthWorker_KeepsItsPeerIdAndItsUsers_AcrossARestartWithTheSameDataDirectory(CancellationToken ct)
    {
        var bootstrap = await StartAsync(WorkerRole.Bootstrap, "bootstrap", [], ct);
        var auth = await StartAsync(WorkerRole.Auth, "auth", [bootstrap.Addresses[0]], ct);
        var peerId = auth.PeerId;
        var client = await ClientAsync("client-1", bootstrap, ct);
        var registered = await Call(client, WorkerMethods.Auth.Register, new RegisterRequest { Email = "kept@example.com", Password = Password }, RegisterResponse.Parser, ct);
        await auth.StopAsync(ct);
        Assert.That(auth.State, Is.EqualTo(WorkerRuntimeState.Stopped));

        var restarted = await StartAsync(WorkerRole.Auth, "auth", [bootstrap.Addresses[0]], ct);
        var again = await ClientAsync("client-2", bootstrap, ct);
        var login = await Call(again, WorkerMethods.Auth.Login, new LoginRequest { Email = "kept@example.com", Password = Password }, LoginResponse.Parser, ct);

        Assert.That(restarted.PeerId, Is.EqualTo(peerId));
        Assert.That(login.UserId, Is.EqualTo(registered.UserId));
        Assert.That(File.Exists(Path.Combine(_root, "auth", WorkerRuntimeOptions.IdentityFileName)), Is.True);
    }

    [Test]
    public async Task AuthWorker_RefusesCallsOnceStopped_WithUnavailable(CancellationToken ct)
    {
        var bootstrap = await StartAsync(WorkerRole.Bootstrap, "bootstrap", [], ct);
        var auth = await StartAsync(WorkerRole.Auth, "auth", [bootstrap.Addresses[0]], ct);
        var client = await ClientAsync("client-1", bootstrap, ct);
        await Call(client, WorkerMethods.Auth.Register, new RegisterRequest { Email = "gone@example.com", Password = Password }, RegisterResponse.Parser, ct);

        await auth.StopAsync(ct);

        var error = Assert.ThrowsAsync<RpcException>(() => client.RequestAsync(auth.PeerId, WorkerMethods.Auth.Login,
            new LoginRequest { Email = "gone@example.com", Password = Password }.ToByteArray(), null, ct));
        Assert.That(error!.Code, Is.EqualTo(RpcStatusCode.Unavailable));
    }

    [Test]
    public async Task AuthWorker_KeepsItsLastInboundSlotsForGrantedPeers_WhenPlainPeersFillTheRest(CancellationToken ct)
    {
        // 8 inbound slots, the last 2 kept for peers holding a grant of the cluster (set as an operator
        // would, in the Host section); no DHT, so only the peers below connect.
        var auth = await StartAsync(WorkerRole.Auth, "auth", [], ct,
            new HostSettings { MaxInboundConnections = 8, InboundConnectionsReservedForTrustedPeers = 2, InboundConnectionsReservedForNewAddresses = 0 });
        for (var i = 0; i < 6; i++) await (await HostAsync($"plain-{i}", ct)).ConnectAsync(auth.Addresses[0], ct);

        var intruder = await (await HostAsync("intruder", ct)).ConnectAsync(auth.Addresses[0], ct);
        await intruder.Completion.ObserveFailureAsync().WaitAsync(ct);

        var gateway = await HostAsync("gateway", ct);
        var rpc = new RpcNode(gateway);
        _owned.Add(rpc);
        var grant = Cluster.Issue(gateway.PeerId, GrantRole.Gateway, TimeProvider.System.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance);
        GrantExchange.Serve(rpc, grant);
        var client = new TrustedRpcClient(rpc, new GrantVerifier(Cluster.Id, TimeProvider.System), WorkerTrust.RoleOfMethod, new HeldGrant(grant));
        await gateway.ConnectAsync(auth.Addresses[0], ct);
        var registered = RegisterResponse.Parser.Decode(await client.RequestAsync(auth.PeerId, WorkerMethods.Auth.Register,
            MessagePackRpcCodec<RegisterRequest>.Instance.Encode(new RegisterRequest { Email = "kept@example.com", Password = Password }), null, ct));

        Assert.That(registered.UserId, Is.Not.Empty, "the granted gateway is served in a kept slot");
        Assert.That(gateway.GetConnection(auth.PeerId), Is.Not.Null, "and keeps its connection");
    }

    private async Task<WorkerRuntime> StartAsync(WorkerRole role, string name, IReadOnlyList<P2PInference.Facilities.Addressing.Multiaddress> bootstrap,
        CancellationToken ct, HostSettings? host = null)
    {
        var options = new WorkerRuntimeOptions
        {
            Role = role,
            DataDirectory = Path.Combine(_root, name),
            ListenAddresses = [InMemoryNetwork.AddressOf(name)],
            BootstrapPeers = bootstrap,
            TransportFactory = _ => [_network.CreateTransport(name)],
            DrainTimeout = TimeSpan.FromSeconds(5),
            ClusterKey = role == WorkerRole.Bootstrap ? null : Cluster,
            Host = host ?? new HostSettings(),
        };
        IWorker? worker = role == WorkerRole.Auth ? new AuthWorker(new AuthOptions { PasswordIterations = AuthOptions.MinPasswordIterations }) : null;
        var runtime = new WorkerRuntime(options, worker);
        _owned.Add(runtime);
        await runtime.StartAsync(ct);
        await runtime.Ready.WaitAsync(ct);
        return runtime;
    }

    private async Task<P2PHost> HostAsync(string name, CancellationToken ct)
    {
        var host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [_network.CreateTransport(name)] });
        _owned.Add(host);
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], ct);
        return host;
    }

    /// <summary>Auth serves gateways only: the caller holds a gateway grant of the cluster, and checks Auth's grant before each call.</summary>
    private async Task<IRpcClient> ClientAsync(string name, WorkerRuntime bootstrap, CancellationToken ct)
    {
        var host = await HostAsync(name, ct);
        var identity = host.Identity;
        var dht = new KademliaDht(host, new KademliaDhtOptions { Mode = DhtMode.Client, BootstrapPeers = [bootstrap.Addresses[0]] });
        _owned.Add(dht);
        await dht.StartAsync(ct);
        var rpc = new RpcNode(host, discovery: dht);
        _owned.Add(rpc);
        var grant = Cluster.Issue(identity.PeerId, GrantRole.Gateway, TimeProvider.System.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance);
        return new TrustedRpcClient(rpc, new GrantVerifier(Cluster.Id, TimeProvider.System), WorkerTrust.RoleOfMethod, new HeldGrant(grant));
    }

    private static readonly ClusterKey Cluster = ClusterKey.Generate(SystemRandomSource.Instance);

    private static async Task<TResponse> Call<TRequest, TResponse>(IRpcClient client, string method, TRequest request, MessagePackRpcCodec<TResponse> parser,
        CancellationToken ct)
        where TRequest : class
        where TResponse : class =>
        parser.Decode(await client.RequestTopicAsync(WorkerTopics.Auth, method, MessagePackRpcCodec<TRequest>.Instance.Encode(request), null, ct));
}
