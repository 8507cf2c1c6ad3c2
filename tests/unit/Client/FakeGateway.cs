using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Client;

/// <summary>
/// A gateway on the RPC twin, announced on the mock DHT, with canned answers a test can replace.
/// It records every call: method, credential and the time on the test's clock.
/// </summary>
internal sealed class FakeGateway : IAsyncDisposable
{
    public const string Token = "tok-123";
    public const string ApiKey = "sk-secret-1";

    /// <summary>The cluster the fake gateways hold gateway grants of; clients of these tests trust it.</summary>
    public static readonly ClusterKey Cluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)0x5a, 32).ToArray()));

    private readonly TimeProvider _time;

    public FakeGateway(InMemoryRpcNetwork network, MockDhtRegistry registry, string name)
    {
        _time = network.TimeProvider;
        // Fixed by name: which of two gateways the DHT lists first must not change from run to run.
        var peer = KeyPair.FromSeed(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("fake gateway " + name))).PeerId;
        Node = network.CreateNode(peer);
        Dht = registry.CreateNode(peer, [Multiaddress.Memory(name)]);
        GrantExchange.Serve(Node, Cluster.Issue(peer, GrantRole.Gateway, DateTimeOffset.UnixEpoch, new DateTimeOffset(2100, 1, 1, 0, 0, 0, TimeSpan.Zero), GrantSerial));
        Handle(WorkerMethods.Gateway.Register, RegisterRequest.Parser, (r, _) => new RegisterResponse { UserId = "u1", Email = r.Email.Trim().ToLowerInvariant() });
        Handle(WorkerMethods.Gateway.Login, LoginRequest.Parser, (r, _) => r.Password == "right"
            ? new LoginResponse { Token = Token, UserId = "u1", ExpiresAtUnixMs = _time.GetUtcNow().AddHours(1).ToUnixTimeMilliseconds() }
            : throw new RpcException(RpcStatusCode.Unauthenticated, "wrong email or password"));
        Handle(WorkerMethods.Gateway.CreateApiKey, CreateApiKeyRequest.Parser, (r, _) =>
            new CreateApiKeyResponse { KeyId = "k1", ApiKey = ApiKey, Name = r.Name, CreatedAtUnixMs = 946684800000 });
        Handle(WorkerMethods.Gateway.ListApiKeys, ListApiKeysRequest.Parser, (_, _) => new ListApiKeysResponse
        {
            Keys = { new ApiKeyInfo { KeyId = "k1", Name = "laptop", Last4 = "et-1", CreatedAtUnixMs = 946684800000 } },
        });
        Handle(WorkerMethods.Gateway.RevokeApiKey, RevokeApiKeyRequest.Parser, (r, _) => new RevokeApiKeyResponse { KeyId = r.KeyId, NewlyRevoked = true });
        Handle(WorkerMethods.Gateway.Logout, LogoutRequest.Parser, (r, _) => r.Token == Token
            ? new LogoutResponse { UserId = "u1", ExpiresAtUnixMs = _time.GetUtcNow().AddHours(1).ToUnixTimeMilliseconds() }
            : throw new RpcException(RpcStatusCode.Unauthenticated, "the token has been revoked"));
        Handle(WorkerMethods.Gateway.RevokeAllTokens, RevokeAllTokensRequest.Parser, (_, _) =>
            new RevokeAllTokensResponse { UserId = "u1", RevokedBeforeUnixMs = _time.GetUtcNow().AddSeconds(1).ToUnixTimeMilliseconds() });
        Handle(WorkerMethods.Gateway.Models, ModelsRequest.Parser, (_, _) => new ModelsResponse
        {
            Models = { new ModelInfo { Name = "builtin-small", Description = "trigram", MaxTokens = 512, Processors = 2 } },
        });
        Handle(WorkerMethods.Gateway.Infer, InferRequest.Parser, (r, _) => new InferResponse
        {
            RequestId = r.RequestId, Model = r.Model, Text = InputOf(r).ToUpperInvariant(), Tokens = 1, FinishReason = "stop", Processor = "p1",
            PromptTokens = InputOf(r).Split(' ').Length, CompletionTokens = 1,
        });
        HandleStream(WorkerMethods.Gateway.InferStream, (r, _) => Words(r));
        Handle(WorkerMethods.Gateway.Cancel, CancelRequest.Parser, (r, _) => new CancelResponse { Cancelled = r.RequestId == "running" });
    }

    public InMemoryRpcNode Node { get; }

    public MockDht Dht { get; }

    public PeerId PeerId => Node.PeerId;

    public ConcurrentQueue<Call> Calls { get; } = new();

    public Task AnnounceAsync() => Dht.AnnounceAsync(WorkerTopics.Gateway, CancellationToken.None);

    /// <summary>The serial of the gateway grant it presents.</summary>
    public const ulong GrantSerial = 1;

    /// <summary>Hands <paramref name="list"/> on to whoever asks for a newer one (as a worker does); null: stops answering such queries.</summary>
    public void HandOn(SignedRevocationList? list)
    {
        if (list is null)
        {
            Node.Unrespond(RevocationExchange.Method);
            return;
        }
        Node.Respond(RevocationExchange.Method, (_, _) => ValueTask.FromResult(list.Bytes));
    }

    public Call[] CallsOf(string method) => Calls.Where(c => c.Method == method).ToArray();

    public void Handle<TRequest, TResponse>(string method, MessagePackRpcCodec<TRequest> parser, Func<TRequest, RpcCallContext, TResponse> handler)
        where TRequest : class
        where TResponse : class =>
        Node.Respond<TRequest, TResponse>(method, parser, (request, context) =>
        {
            Record(context, request);
            return ValueTask.FromResult(handler(request, context));
        });

    public void HandleStream(string method, Func<InferRequest, RpcCallContext, IAsyncEnumerable<InferChunk>> handler) =>
        Node.RespondStreaming<InferRequest, InferChunk>(method, InferRequest.Parser, (request, context) =>
        {
            Record(context, request);
            return handler(request, context);
        });

    private void Record(RpcCallContext context, object request) =>
        Calls.Enqueue(new Call(context.Method, context.Metadata.GetValueOrDefault(WorkerMethods.AuthorizationMetadata), _time.GetUtcNow(), request,
            context.RequestId));

    private static async IAsyncEnumerable<InferChunk> Words(InferRequest request, [EnumeratorCancellation] CancellationToken ct = default)
    {
        var words = InputOf(request).Split(' ');
        for (var i = 0; i < words.Length; i++)
        {
            await Task.Yield();
            var last = i == words.Length - 1;
            yield return new InferChunk
            {
                RequestId = request.RequestId, Text = (i == 0 ? "" : " ") + words[i], Index = i, FinishReason = last ? "stop" : "",
                PromptTokens = last ? words.Length : 0, CompletionTokens = last ? words.Length : 0,
            };
        }
    }

    /// <summary>What the fake answers from: the prompt, or a chat's last message.</summary>
    public static string InputOf(InferRequest request) => request.IsChat ? request.Messages[^1].Content : request.Prompt;

    public async ValueTask DisposeAsync()
    {
        await Node.DisposeAsync();
        await Dht.DisposeAsync();
    }

    internal sealed record Call(string Method, string? Authorization, DateTimeOffset At, object Request, string RpcRequestId);
}
