using P2PInference.Facilities.Encoding;
using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Workers.Client;

/// <summary>
/// The .NET SDK of P2PInference: account, API key, model and inference calls to a gateway found
/// by the <see cref="WorkerTopics.Gateway"/> topic. Credentials travel in RPC metadata
/// (<see cref="WorkerMethods.AuthorizationMetadata"/>). Idempotent calls (models, listing and
/// revoking keys) are retried with exponential backoff and jitter while gateways are Unavailable;
/// register, login, key creation and inference are not, since a second try could act twice.
/// Every failure is an <see cref="RpcException"/> (see <see cref="PartialOutputOf"/> for a stream
/// that broke off), except the caller's own cancellation.
/// </summary>
public sealed class P2PInferenceClient : IAsyncDisposable
{
    /// <summary>The one line a client without a cluster id refuses credentials with.</summary>
    public const string NoClusterMessage =
        "no cluster id: this client sends no credentials to a gateway it cannot verify; pass --cluster ID (printed by `p2pinference cluster init`)";

    private readonly IRpcClient _rpc;
    private readonly TrustedRpcClient? _trusted;
    private readonly ClientOptions _options;
    private readonly IReadOnlyList<IAsyncDisposable> _owned;
    private readonly ILogger _logger;
    // The Random itself: clients made by WithApiKey share it, so they must share its lock.
    private readonly object _randomGate;
    private CredentialMetadata? _metadata;
    private int _disposed;

    /// <summary>
    /// A client over an RPC node the caller owns (e.g. the TestKit twins). The node finds the gateways: its
    /// topic calls look them up through its discovery and keep them for its <see cref="RpcOptions.TopicCacheTtl"/>.
    /// </summary>
    public P2PInferenceClient(IRpcClient rpc, ClientOptions? options = null)
        : this(rpc, options, [])
    {
    }

    internal P2PInferenceClient(IRpcClient rpc, ClientOptions? options, IReadOnlyList<IAsyncDisposable> owned)
    {
        ArgumentNullException.ThrowIfNull(rpc);
        options ??= new ClientOptions();
        options.Validate();
        if (options.ClusterId is { } cluster)
        {
            var verifier = new GrantVerifier(cluster, options.TimeProvider) { Revocations = options.Revocations };
            // A list of another cluster (the profile's cluster changed since) is simply not held.
            if (options.SignedRevocations is { } known) verifier.Adopt(known, out _);
            _trusted = new TrustedRpcClient(rpc, verifier, WorkerTrust.RoleOfMethod, ownGrant: null, options.GrantCachePeriod, options.LoggerFactory);
            rpc = _trusted;
        }
        _rpc = rpc;
        _options = options;
        _randomGate = options.Random;
        _owned = owned;
        _logger = options.LoggerFactory.CreateLogger<P2PInferenceClient>();
        ApiKey = options.ApiKey;
        Token = options.Token;
    }

    /// <summary><see cref="WithApiKey"/>: the same connection, grant checks and known gateways as <paramref name="parent"/>.</summary>
    private P2PInferenceClient(P2PInferenceClient parent, ClientOptions options)
    {
        _trusted = parent._trusted;
        _rpc = parent._rpc;
        _options = options;
        _randomGate = parent._randomGate;
        _owned = [];
        _logger = parent._logger;
        ApiKey = options.ApiKey;
        Token = options.Token;
    }

    /// <summary>The credential of inference calls; set by <see cref="CreateApiKeyAsync"/>.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The login token of account calls; set by <see cref="LoginAsync"/>.</summary>
    public string? Token { get; set; }

    public ClientOptions Options => _options;

    /// <summary>The newest signed revocation list this client holds: the one it was given, or a newer one a gateway handed on.</summary>
    public SignedRevocationList? SignedRevocations => _trusted?.Verifier.SignedRevocations;

    /// <summary>
    /// Joins the network over TCP through <paramref name="bootstrap"/> (full multiaddrs ending in
    /// /p2p/&lt;PeerId&gt;) as a DHT client, and returns a client that owns the host, the DHT and the RPC node.
    /// </summary>
    /// <remarks>
    /// Over TCP and through relays: a gateway behind NAT announces only its circuit address. When the
    /// gateway upgrades the relayed connection by hole punching, this host answers it (DCUtR).
    /// </remarks>
    public static Task<P2PInferenceClient> ConnectAsync(IReadOnlyList<Multiaddress> bootstrap, ClientOptions? options, CancellationToken cancellationToken) =>
        ConnectAsync(bootstrap, options,
            [new CircuitRelayTransport(new CircuitRelayOptions { LoggerFactory = options?.LoggerFactory ?? NullLoggerFactory.Instance }), new TcpTransport()],
            cancellationToken);

    internal static async Task<P2PInferenceClient> ConnectAsync(IReadOnlyList<Multiaddress> bootstrap, ClientOptions? options,
        IReadOnlyList<ITransport> transports, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(bootstrap);
        options ??= new ClientOptions();
        options.Validate();
        if (bootstrap.Count == 0) throw new ArgumentException("at least one bootstrap address is needed to join the network", nameof(bootstrap));
        foreach (var address in bootstrap)
        {
            if (address.PeerId is null) throw new FormatException($"bootstrap address '{address}' does not end in /p2p/<PeerId>");
        }
        var time = options.TimeProvider;
        var host = new P2PHost(new HostOptions
        {
            Identity = options.Identity ?? KeyPair.Generate(options.RandomSource),
            Transports = transports,
            TimeProvider = time,
            RandomSource = options.RandomSource,
            LoggerFactory = options.LoggerFactory,
        });
        var owned = new List<IAsyncDisposable> { host };
        try
        {
            if (transports.OfType<CircuitRelayTransport>().Any())
                owned.Insert(0, new DcutrService(host, new DcutrOptions { LoggerFactory = options.LoggerFactory }));
            int dhtSeed, rpcSeed;
            lock (options.Random)
            {
                dhtSeed = options.Random.Next();
                rpcSeed = options.Random.Next();
            }
            var dht = new KademliaDht(host, new KademliaDhtOptions
            {
                ProtocolId = options.DhtProtocolId,
                Mode = DhtMode.Client,
                BootstrapPeers = bootstrap,
                TimeProvider = time,
                RandomSeed = dhtSeed,
                LoggerFactory = options.LoggerFactory,
            });
            owned.Insert(0, dht);
            using (var join = new CancellationTokenSource(options.JoinTimeout, time))
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, join.Token))
            {
                try
                {
                    await dht.StartAsync(linked.Token);
                    await dht.WaitUntilJoinedAsync(linked.Token);
                }
                catch (OperationCanceledException) when (join.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    throw new RpcException(RpcStatusCode.Unavailable,
                        $"could not join the network through {string.Join(", ", bootstrap)} within {options.JoinTimeout.TotalSeconds:0.#} s");
                }
            }
            var rpc = new RpcNode(host, new RpcOptions { TimeProvider = time, Random = new Random(rpcSeed), RandomSource = options.RandomSource, LoggerFactory = options.LoggerFactory }, dht);
            owned.Insert(0, rpc);
            return new P2PInferenceClient(rpc, options, owned);
        }
        catch
        {
            foreach (var o in owned) await o.DisposeAsync();
            throw;
        }
    }

    public Task<RegisterResponse> RegisterAsync(string email, string password, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(email);
        ArgumentNullException.ThrowIfNull(password);
        return CallAsync(WorkerMethods.Gateway.Register, new RegisterRequest { Email = email, Password = password }, RegisterResponse.Parser,
            credential: null, idempotent: false, cancellationToken);
    }

    /// <summary>Logs in and keeps the token in <see cref="Token"/> for the account calls that follow.</summary>
    public async Task<LoginResponse> LoginAsync(string email, string password, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(email);
        ArgumentNullException.ThrowIfNull(password);
        var response = await CallAsync(WorkerMethods.Gateway.Login, new LoginRequest { Email = email, Password = password }, LoginResponse.Parser,
            credential: null, idempotent: false, cancellationToken);
        Token = response.Token;
        return response;
    }

    /// <summary>Creates an API key (needs <see cref="Token"/>) and keeps it in <see cref="ApiKey"/>; the secret is shown only in this response.</summary>
    /// <summary>Creates an API key named <paramref name="name"/>, or <c>key-YYYY-MM-DD</c> (today, UTC) when none is given.</summary>
    public async Task<CreateApiKeyResponse> CreateApiKeyAsync(string? name, CancellationToken cancellationToken)
    {
        var token = RequireToken();
        if (string.IsNullOrWhiteSpace(name)) name = DefaultApiKeyName(_options.TimeProvider.GetUtcNow());
        var response = await CallAsync(WorkerMethods.Gateway.CreateApiKey, new CreateApiKeyRequest { Token = token, Name = name },
            CreateApiKeyResponse.Parser, Bearer(token), idempotent: false, cancellationToken);
        ApiKey = response.ApiKey;
        return response;
    }

    internal static string DefaultApiKeyName(DateTimeOffset now) => "key-" + now.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    public async Task<IReadOnlyList<ApiKeyInfo>> ListApiKeysAsync(CancellationToken cancellationToken)
    {
        var token = RequireToken();
        var response = await CallAsync(WorkerMethods.Gateway.ListApiKeys, new ListApiKeysRequest { Token = token }, ListApiKeysResponse.Parser,
            Bearer(token), idempotent: true, cancellationToken);
        return response.Keys;
    }

    /// <summary>Revokes a key; revoking one already revoked succeeds with <c>NewlyRevoked</c> false, so the call is retried safely.</summary>
    public async Task<RevokeApiKeyResponse> RevokeApiKeyAsync(string keyId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(keyId);
        var token = RequireToken();
        return await CallAsync(WorkerMethods.Gateway.RevokeApiKey, new RevokeApiKeyRequest { Token = token, KeyId = keyId }, RevokeApiKeyResponse.Parser,
            Bearer(token), idempotent: true, cancellationToken);
    }

    /// <summary>
    /// Revokes <see cref="Token"/> and forgets it. The gateway asked refuses the token at once; other
    /// gateways within their credential cache period (30 s by default).
    /// </summary>
    public async Task<LogoutResponse> LogoutAsync(CancellationToken cancellationToken)
    {
        var token = RequireToken();
        // Not retried: a logout that went through has revoked the token the retry would present.
        var response = await CallAsync(WorkerMethods.Gateway.Logout, new LogoutRequest { Token = token }, LogoutResponse.Parser,
            Bearer(token), idempotent: false, cancellationToken);
        Token = null;
        return response;
    }

    /// <summary>Revokes every login token of the account issued until now, <see cref="Token"/> included, and forgets it. API keys stay valid.</summary>
    public async Task<RevokeAllTokensResponse> RevokeAllTokensAsync(CancellationToken cancellationToken)
    {
        var token = RequireToken();
        var response = await CallAsync(WorkerMethods.Gateway.RevokeAllTokens, new RevokeAllTokensRequest { Token = token }, RevokeAllTokensResponse.Parser,
            Bearer(token), idempotent: false, cancellationToken);
        Token = null;
        return response;
    }

    public async Task<IReadOnlyList<ModelInfo>> ModelsAsync(CancellationToken cancellationToken)
    {
        // Listing models needs no credential: a client without a cluster id asks without one.
        var response = await CallAsync(WorkerMethods.Gateway.Models, new ModelsRequest(), ModelsResponse.Parser,
            _trusted is null ? null : InferenceCredential(required: false), idempotent: true, cancellationToken);
        return response.Models;
    }

    /// <summary>One whole inference. A request without an id gets one, so it can be named to <see cref="CancelAsync"/>.</summary>
    public async Task<InferResponse> InferAsync(InferRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var credential = InferenceCredential(required: true);
        EnsureRequestId(request);
        return await CallAsync(WorkerMethods.Gateway.Infer, request, InferResponse.Parser, credential, idempotent: false, cancellationToken, _options.InferTimeout);
    }

    /// <summary>
    /// Streams an inference's chunks as the gateway relays them; the last carries the finish reason.
    /// Stopping the enumeration cancels the request all the way to the engine.
    /// </summary>
    public async IAsyncEnumerable<InferChunk> InferStreamAsync(InferRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var credential = InferenceCredential(required: true);
        if (_trusted is null) throw NoCluster();
        EnsureRequestId(request);
        // The RPC node picks the gateway as for unary calls (by load, among those proving their grant), forgets one
        // that could not be called, and tries another when the request provably never reached it.
        var options = CallOptions(credential, idempotent: false, _options.InferTimeout, request.RequestId);
        await foreach (var chunk in _rpc.RequestTopicStreamAsync(WorkerTopics.Gateway, WorkerMethods.Gateway.InferStream, request, InferChunk.Parser, options, cancellationToken))
            yield return chunk;
    }

    /// <summary>Asks every gateway to cancel <paramref name="requestId"/>; true when one was running it for this caller.</summary>
    public async Task<bool> CancelAsync(string requestId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(requestId);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var credential = InferenceCredential(required: true);
        if (_trusted is null) throw NoCluster();
        // The request runs on whichever gateway took it; asking them all needs no memory of which.
        var results = await _rpc.RequestAllAsync(WorkerTopics.Gateway, WorkerMethods.Gateway.Cancel, new CancelRequest { RequestId = requestId }.ToByteArray(),
            CallOptions(credential, idempotent: true, _options.CallTimeout, null), cancellationToken);
        if (results.Count == 0) throw new RpcException(RpcStatusCode.Unavailable, "no gateway found on the network");
        var cancelled = false;
        RpcException? firstError = null;
        var skippedError = false;
        foreach (var result in results)
        {
            if (result.Error is { } error)
            {
                // A gateway the trust check skipped says less than one that was asked and failed.
                if (firstError is null || (skippedError && !result.Skipped)) (firstError, skippedError) = (error, result.Skipped);
                continue;
            }
            try
            {
                cancelled |= CancelResponse.Parser.Decode(result.Response ?? []).Cancelled;
            }
            catch (MalformedMessageException e)
            {
                firstError ??= new RpcException(RpcStatusCode.Internal, $"malformed response to '{WorkerMethods.Gateway.Cancel}': {e.Message}");
            }
        }
        if (!cancelled && firstError is not null && results.All(r => r.Error is not null)) throw firstError;
        return cancelled;
    }

    /// <summary>
    /// A client for the same network connection that sends <paramref name="apiKey"/> with inference
    /// calls (and no login token): one per caller of a shared connection, as <c>client serve</c> does
    /// for each request's <c>Authorization: Bearer</c> key. Disposing it leaves the connection open.
    /// </summary>
    public P2PInferenceClient WithApiKey(string apiKey)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(apiKey);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return new P2PInferenceClient(this, _options with { ApiKey = apiKey, Token = null });
    }

    /// <summary>The text generated before an inference failed, as the processor reported it; null when there was none.</summary>
    public static string? PartialOutputOf(RpcException exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return exception.Details.TryGetValue(WorkerMethods.PartialOutputDetail, out var text) && text.Length > 0 ? text : null;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var owned in _owned) await owned.DisposeAsync();
    }

    private async Task<TResponse> CallAsync<TRequest, TResponse>(string method, TRequest request, MessagePackRpcCodec<TResponse> parser, string? credential,
        bool idempotent, CancellationToken cancellationToken, TimeSpan? timeout = null)
        where TRequest : class
        where TResponse : class
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_trusted is null && (credential is not null || request is RegisterRequest or LoginRequest)) throw NoCluster();
        var requestId = request is InferRequest infer ? infer.RequestId : null;
        var options = CallOptions(credential, idempotent, timeout ?? _options.CallTimeout, requestId);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await _rpc.RequestTopicAsync(WorkerTopics.Gateway, method, request, parser, options, cancellationToken);
            }
            catch (RpcException e) when (idempotent && e.Code == RpcStatusCode.Unavailable && attempt < _options.MaxAttempts)
            {
                var delay = Backoff(attempt, RetryAfterOf(e));
                _logger.LogInformation("{Method} failed ({Message}); try {Attempt} of {MaxAttempts} in {DelayMs} ms",
                    method, e.Message, attempt + 1, _options.MaxAttempts, (long)delay.TotalMilliseconds);
                await Task.Delay(delay, _options.TimeProvider, cancellationToken);
            }
        }
    }

    /// <summary>Exponential backoff with "equal jitter": half the step fixed, half random, never under the server's retry-after.</summary>
    internal TimeSpan Backoff(int attempt, TimeSpan? retryAfter)
    {
        var step = _options.InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 30));
        step = Math.Min(step, _options.MaxBackoff.TotalMilliseconds);
        double jitter;
        lock (_randomGate) jitter = _options.Random.NextDouble();
        var delay = TimeSpan.FromMilliseconds(step / 2 + jitter * step / 2);
        return retryAfter is { } floor && floor > delay ? floor : delay;
    }

    /// <summary>The server's retry-after, also when topic routing wrapped the provider's error in its own.</summary>
    private static TimeSpan? RetryAfterOf(RpcException e)
    {
        for (Exception? current = e; current is not null; current = current.InnerException)
        {
            if (current is RpcException { RetryAfter: { } wait }) return wait;
        }
        return null;
    }

    private RpcCallOptions CallOptions(string? credential, bool idempotent, TimeSpan timeout, string? requestId) => new()
    {
        Timeout = timeout,
        Idempotent = idempotent,
        RequestId = string.IsNullOrEmpty(requestId) ? null : requestId,
        Metadata = credential is null ? null : MetadataOf(credential),
    };

    /// <summary>The metadata carrying <paramref name="credential"/>: the same read-only one for every call while the credential stays.</summary>
    private IReadOnlyDictionary<string, string> MetadataOf(string credential)
    {
        if (Volatile.Read(ref _metadata) is { } last && last.Credential == credential) return last.Metadata;
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal) { [WorkerMethods.AuthorizationMetadata] = credential }.AsReadOnly();
        Volatile.Write(ref _metadata, new CredentialMetadata(credential, metadata));
        return metadata;
    }

    private static RpcException NoCluster() => new(RpcStatusCode.InvalidArgument, NoClusterMessage);

    private void EnsureRequestId(InferRequest request)
    {
        if (!string.IsNullOrEmpty(request.RequestId)) return;
        long value;
        lock (_randomGate) value = _options.Random.NextInt64();
        request.RequestId = "c-" + value.ToString("x16", CultureInfo.InvariantCulture);
    }

    private string RequireToken() =>
        string.IsNullOrEmpty(Token)
            ? throw new RpcException(RpcStatusCode.Unauthenticated, "not logged in: log in first")
            : Token;

    private string? InferenceCredential(bool required)
    {
        if (!string.IsNullOrEmpty(ApiKey)) return "ApiKey " + ApiKey;
        if (!string.IsNullOrEmpty(Token)) return Bearer(Token);
        return required ? throw new RpcException(RpcStatusCode.Unauthenticated, "no API key: create one, or give one") : null;
    }

    private static string Bearer(string token) => "Bearer " + token;

    private sealed record CredentialMetadata(string Credential, IReadOnlyDictionary<string, string> Metadata);
}
