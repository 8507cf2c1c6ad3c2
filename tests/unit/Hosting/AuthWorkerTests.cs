using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Store;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary>The Auth worker's RPC wiring over the in-memory RPC twin: methods, messages, error codes.</summary>
[CancelAfter(10_000)]
public sealed class AuthWorkerTests
{
    private const string Password = "correct horse battery 42";

    private readonly List<IAsyncDisposable> _owned = [];
    private InMemoryRpcNode _client = null!;
    private PeerId _auth = null!;
    private KeyPair _identity = null!;
    private AuthWorker _worker = null!;

    [SetUp]
    public async Task SetUp()
    {
        var time = new FakeTimeProvider();
        var network = new InMemoryRpcNetwork(time);
        var registry = new MockDhtRegistry(time);
        var store = await RamStore.CreateAsync(time);
        _owned.Add(store);
        _identity = KeyPair.FromRandom(TestSeed.CreateRandom());
        _auth = _identity.PeerId;
        var server = network.CreateNode(_auth);
        _owned.Add(server);
        _client = network.CreateNode();
        _worker = new AuthWorker(new AuthOptions { PasswordIterations = AuthOptions.MinPasswordIterations });
        var topics = await _worker.StartAsync(new WorkerContext
        {
            Identity = _identity,
            Server = server,
            Client = server,
            Discovery = registry.CreateNode(_auth, []),
            Store = store,
            Time = time,
            Random = new Random(1),
        }, CancellationToken.None);
        Assert.That(topics, Is.EqualTo(new[] { WorkerTopics.Auth }));
    }

    [TearDown]
    public async Task TearDown()
    {
        await _client.DisposeAsync();
        foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
        _owned.Clear();
    }

    [Test]
    public async Task Rpc_RegisterLoginCreateKeyValidate_WorkEndToEnd(CancellationToken ct)
    {
        var registered = await Call(WorkerMethods.Auth.Register, new RegisterRequest { Email = "Ada@Example.com", Password = Password }, RegisterResponse.Parser, ct);
        var login = await Call(WorkerMethods.Auth.Login, new LoginRequest { Email = "ada@example.com", Password = Password }, LoginResponse.Parser, ct);
        var key = await Call(WorkerMethods.Auth.CreateApiKey, new CreateApiKeyRequest { Token = login.Token, Name = "laptop" }, CreateApiKeyResponse.Parser, ct);
        var keys = await Call(WorkerMethods.Auth.ListApiKeys, new ListApiKeysRequest { Token = login.Token }, ListApiKeysResponse.Parser, ct);
        var validated = await Call(WorkerMethods.Auth.Validate, new ValidateRequest { ApiKey = key.ApiKey }, ValidateResponse.Parser, ct);
        var revoked = await Call(WorkerMethods.Auth.RevokeApiKey, new RevokeApiKeyRequest { Token = login.Token, KeyId = key.KeyId }, RevokeApiKeyResponse.Parser, ct);

        Assert.That(registered.Email, Is.EqualTo("ada@example.com"));
        Assert.That(login.UserId, Is.EqualTo(registered.UserId));
        Assert.That(keys.Keys.Select(k => k.Name), Is.EqualTo(new[] { "laptop" }));
        Assert.That(validated.UserId, Is.EqualTo(registered.UserId));
        Assert.That(revoked.NewlyRevoked, Is.True);
    }

    [Test]
    public async Task Rpc_TokensAreSignedWithTheWorkersIdentityKey(CancellationToken ct)
    {
        await Call(WorkerMethods.Auth.Register, new RegisterRequest { Email = "sig@example.com", Password = Password }, RegisterResponse.Parser, ct);
        var login = await Call(WorkerMethods.Auth.Login, new LoginRequest { Email = "sig@example.com", Password = Password }, LoginResponse.Parser, ct);

        Assert.That(_worker.Service!.PublicKey, Is.EqualTo(_identity.PublicKey));
        Assert.That(() => _worker.Service.TokenValidator.Validate(login.Token), Throws.Nothing);
    }

    [Test]
    public async Task Rpc_AnswersDuplicateRegistrationWithAlreadyExists(CancellationToken ct)
    {
        await Call(WorkerMethods.Auth.Register, new RegisterRequest { Email = "dup@example.com", Password = Password }, RegisterResponse.Parser, ct);

        var error = Assert.ThrowsAsync<RpcException>(() =>
            Call(WorkerMethods.Auth.Register, new RegisterRequest { Email = "DUP@example.com", Password = Password }, RegisterResponse.Parser, ct));

        Assert.That(error!.Code, Is.EqualTo(RpcStatusCode.AlreadyExists));
        Assert.That(error.Message, Is.EqualTo("an account with this email already exists"));
    }

    [Test]
    public void Rpc_AnswersAWrongPasswordWithUnauthenticated_AndMalformedBytesWithInvalidArgument(CancellationToken ct)
    {
        var wrong = Assert.ThrowsAsync<RpcException>(() =>
            Call(WorkerMethods.Auth.Login, new LoginRequest { Email = "nobody@example.com", Password = Password }, LoginResponse.Parser, ct));
        var malformed = Assert.ThrowsAsync<RpcException>(() => _client.RequestAsync(_auth, WorkerMethods.Auth.Login, new byte[] { 0xFF, 0xFF, 0xFF }, null, ct));

        Assert.That(wrong!.Code, Is.EqualTo(RpcStatusCode.Unauthenticated));
        Assert.That(malformed!.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
    }

    [TestCase(AuthErrorCode.InvalidArgument, RpcStatusCode.InvalidArgument)]
    [TestCase(AuthErrorCode.Unauthenticated, RpcStatusCode.Unauthenticated)]
    [TestCase(AuthErrorCode.PermissionDenied, RpcStatusCode.PermissionDenied)]
    [TestCase(AuthErrorCode.NotFound, RpcStatusCode.NotFound)]
    [TestCase(AuthErrorCode.AlreadyExists, RpcStatusCode.AlreadyExists)]
    [TestCase(AuthErrorCode.ResourceExhausted, RpcStatusCode.ResourceExhausted)]
    public void ToRpc_MapsEachAuthCodeToTheRpcCodeOfTheSameName(AuthErrorCode code, RpcStatusCode expected)
    {
        var error = AuthWorker.ToRpc(new AuthException(code, "why"));

        Assert.That(error.Code, Is.EqualTo(expected));
        Assert.That(error.Code.ToString(), Is.EqualTo(code.ToString()));
        Assert.That(error.Message, Is.EqualTo("why"));
    }

    [Test]
    public void ToRpc_CoversEveryAuthCode() =>
        Assert.That(Enum.GetValues<AuthErrorCode>().Select(c => AuthWorker.ToRpc(new AuthException(c, "x")).Code.ToString()),
            Is.EqualTo(Enum.GetNames<AuthErrorCode>()));

    [Test]
    public void ToRpc_CarriesRetryAfter_ForAThrottledLogin()
    {
        var error = AuthWorker.ToRpc(new AuthException(AuthErrorCode.ResourceExhausted, "slow down", TimeSpan.FromSeconds(90)));

        Assert.That(error.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(90)));
    }

    [Test]
    public void Constructor_RejectsInvalidOptions() =>
        Assert.Throws<ArgumentException>(() => _ = new AuthWorker(new AuthOptions { PasswordIterations = 1 }));

    private async Task<TResponse> Call<TRequest, TResponse>(string method, TRequest request, MessagePackRpcCodec<TResponse> parser, CancellationToken ct)
        where TRequest : class
        where TResponse : class =>
        parser.Decode(await _client.RequestAsync(_auth, method, MessagePackRpcCodec<TRequest>.Instance.Encode(request), null, ct));
}
