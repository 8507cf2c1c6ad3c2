using P2PInference.Facilities.Encoding;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Hosting;

namespace P2PInference.Workers.Gateway;

/// <summary>
/// The Gateway worker: the clients' way in. It announces <see cref="WorkerTopics.Gateway"/> and
/// serves <see cref="WorkerMethods.Gateway"/>: the account methods are forwarded to Auth; inference
/// is authenticated (metadata <see cref="WorkerMethods.AuthorizationMetadata"/>, validated by Auth and
/// cached), rate limited per key, and sent to a processor of the model, failing over to another
/// while no token has been produced; after the first token a failure ends the stream with the
/// text so far in <see cref="WorkerMethods.PartialOutputDetail"/>. Deadlines propagate; every
/// request has an id (the client's or one made here) that every hop logs.
/// </summary>
public sealed class GatewayWorker : IWorker
{
    /// <summary>The most text carried back in <see cref="WorkerMethods.PartialOutputDetail"/>, in characters.</summary>
    public const int MaxPartialOutputChars = 16 * 1024;

    private static readonly string[] Methods =
    [
        WorkerMethods.Gateway.Register, WorkerMethods.Gateway.Login, WorkerMethods.Gateway.CreateApiKey, WorkerMethods.Gateway.ListApiKeys,
        WorkerMethods.Gateway.RevokeApiKey, WorkerMethods.Gateway.Models, WorkerMethods.Gateway.Infer, WorkerMethods.Gateway.InferStream,
        WorkerMethods.Gateway.Cancel, WorkerMethods.Gateway.Logout, WorkerMethods.Gateway.RevokeAllTokens,
    ];

    private readonly GatewayOptions _options;
    private readonly InFlightRequests _inFlight = new();
    private State? _state;

    public GatewayWorker(GatewayOptions? options = null)
    {
        _options = options ?? new GatewayOptions();
        _options.Validate();
    }

    public string Role => "gateway";

    /// <summary>Inference requests running now.</summary>
    public int InFlightCount => _inFlight.Count;

    public Task<IReadOnlyList<string>> StartAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        cancellationToken.ThrowIfCancellationRequested();
        if (_state is not null) throw new InvalidOperationException("the gateway worker is already started");
        var logger = context.LoggerFactory.CreateLogger<GatewayWorker>();
        var cache = new CredentialCache(context.Time, _options.CredentialCacheTtl, _options.NegativeCredentialCacheTtl, _options.CredentialCacheCapacity);
        _state = new State(
            context,
            logger,
            new AuthClient(context.Client, cache, _options, logger),
            new ProcessorPicker(context.Client, _options, context.Time, context.Random, logger),
            new TokenBucketRateLimiter(context.Time, _options.RateLimiterCapacity));

        var server = context.Server;
        RespondAccount(server, WorkerMethods.Gateway.Register, WorkerMethods.Auth.Register, RegisterRequest.Parser, RegisterResponse.Parser, idempotent: false, null);
        RespondAccount(server, WorkerMethods.Gateway.Login, WorkerMethods.Auth.Login, LoginRequest.Parser, LoginResponse.Parser, idempotent: false, null);
        RespondAccount(server, WorkerMethods.Gateway.CreateApiKey, WorkerMethods.Auth.CreateApiKey, CreateApiKeyRequest.Parser, CreateApiKeyResponse.Parser,
            idempotent: false, (r, c) => r.Token = TokenOf(r.Token, c));
        RespondAccount(server, WorkerMethods.Gateway.ListApiKeys, WorkerMethods.Auth.ListApiKeys, ListApiKeysRequest.Parser, ListApiKeysResponse.Parser,
            idempotent: true, (r, c) => r.Token = TokenOf(r.Token, c));
        RespondAccount(server, WorkerMethods.Gateway.RevokeApiKey, WorkerMethods.Auth.RevokeApiKey, RevokeApiKeyRequest.Parser, RevokeApiKeyResponse.Parser,
            idempotent: true, (r, c) => r.Token = TokenOf(r.Token, c));
        RespondAccount(server, WorkerMethods.Gateway.Logout, WorkerMethods.Auth.Logout, LogoutRequest.Parser, LogoutResponse.Parser,
            idempotent: false, (r, c) => r.Token = TokenOf(r.Token, c),
            (state, r, _) => state.Auth.Forget(new GatewayCredential(CredentialKind.Bearer, r.Token), allTokensOfUser: null));
        RespondAccount(server, WorkerMethods.Gateway.RevokeAllTokens, WorkerMethods.Auth.RevokeAllTokens, RevokeAllTokensRequest.Parser,
            RevokeAllTokensResponse.Parser, idempotent: false, (r, c) => r.Token = TokenOf(r.Token, c),
            (state, r, response) => state.Auth.Forget(new GatewayCredential(CredentialKind.Bearer, r.Token), response.UserId));
        server.Respond(WorkerMethods.Gateway.Models, ModelsAsync);
        server.Respond(WorkerMethods.Gateway.Infer, InferAsync);
        // It relays a processor's stream: chunks already received cost nothing more, so they may leave together.
        server.RespondStreaming(WorkerMethods.Gateway.InferStream, InferStreamAsync, new RpcMethodOptions { CoalesceResponses = true });
        server.Respond(WorkerMethods.Gateway.Cancel, CancelAsync);
        logger.LogInformation("gateway {Peer} serving", context.Identity.PeerId);
        return Task.FromResult<IReadOnlyList<string>>([WorkerTopics.Gateway]);
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        if (_state is { } state)
        {
            foreach (var method in Methods) state.Context.Server.Unrespond(method);
            _inFlight.CancelAll();
            state.Logger.LogInformation("gateway {Peer} stopped", state.Context.Identity.PeerId);
            _state = null;
        }
        return Task.CompletedTask;
    }

    private State Running => _state ?? throw new RpcException(RpcStatusCode.Unavailable, "the gateway is stopping");

    // ---- account methods: forwarded to Auth -------------------------------------------------

    private void RespondAccount<TRequest, TResponse>(IRpcServer server, string method, string authMethod, MessagePackRpcCodec<TRequest> parser,
        MessagePackRpcCodec<TResponse> responseParser, bool idempotent, Action<TRequest, RpcCallContext>? prepare,
        Action<State, TRequest, TResponse>? completed = null)
        where TRequest : class
        where TResponse : class
    {
        server.Respond(method, async (payload, context) =>
        {
            var state = Running;
            var requestId = context.RequestId;
            using var scope = BeginScope(state.Logger, requestId, context);
            state.Logger.LogInformation("request {RequestId}: {Method} from {Peer}", requestId, method, context.RemotePeer);
            try
            {
                // The narrowest bucket first: a peer (or an address) past its quota takes nothing from the wider ones.
                LimitPeer(state, context, requestId);
                if (context.RemoteOrigin is { } origin)
                    Limit(state, "address:" + origin, _options.AccountRateLimitPerAddress, requestId);
                Limit(state, AllAccountCallsKey, _options.AccountRateLimit, requestId);
                var request = Parse(parser, payload, _options.MaxAccountRequestBytes, method);
                prepare?.Invoke(request, context);
                var response = await state.Auth.CallAsync(authMethod, request, responseParser, context, requestId, idempotent, context.CancellationToken);
                completed?.Invoke(state, request, response);
                state.Logger.LogInformation("request {RequestId}: {Method} done", requestId, method);
                return responseParser.Encode(response);
            }
            catch (RpcException e)
            {
                state.Logger.LogInformation("request {RequestId}: {Method} failed: {Code} {Message}", requestId, method, e.Code, e.Message);
                throw;
            }
        });
    }

    /// <summary>The key methods carry the login token in the request; a <c>Bearer</c> credential in the metadata does as well.</summary>
    private static string TokenOf(string token, RpcCallContext context)
    {
        if (token.Length > 0) return token;
        if (context.Metadata.TryGetValue(WorkerMethods.AuthorizationMetadata, out var header) && !string.IsNullOrWhiteSpace(header)
            && GatewayCredential.Parse(header) is { Kind: CredentialKind.Bearer } credential)
            return credential.Value;
        throw new RpcException(RpcStatusCode.Unauthenticated,
            $"missing token: set 'token' in the request or the '{WorkerMethods.AuthorizationMetadata}' metadata to 'Bearer <token>' (from login)");
    }

    // ---- models ----------------------------------------------------------------------------

    private async ValueTask<ReadOnlyMemory<byte>> ModelsAsync(ReadOnlyMemory<byte> payload, RpcCallContext context)
    {
        var state = Running;
        var requestId = context.RequestId;
        using var scope = BeginScope(state.Logger, requestId, context);
        LimitPeer(state, context, requestId);
        Parse(ModelsRequest.Parser, payload, _options.MaxAccountRequestBytes, WorkerMethods.Gateway.Models);
        var cached = state.Models;
        if (cached is not null && state.Context.Time.GetElapsedTime(cached.FetchedAt) < _options.ModelsCacheTtl) return cached.Bytes;

        var fetchedAt = state.Context.Time.GetTimestamp();
        var options = RpcCallOptions.FromContext(context, idempotent: true) with { RequestId = requestId, Timeout = _options.BackendTimeout };
        IReadOnlyList<RpcPeerResult> results;
        try
        {
            results = await state.Context.Client.RequestAllAsync(WorkerTopics.Processor, WorkerMethods.Processor.Status, new StatusRequest().ToByteArray(),
                options, context.CancellationToken);
        }
        catch (RpcException e)
        {
            state.Logger.LogWarning("request {RequestId}: looking up processors failed: {Message}", requestId, e.Message);
            throw new RpcException(RpcStatusCode.Unavailable, "processors unavailable: none could be looked up", innerException: e);
        }
        var models = new SortedDictionary<string, ModelInfo>(StringComparer.Ordinal);
        foreach (var result in results)
        {
            if (result.Response is null) continue;
            StatusResponse status;
            try
            {
                status = StatusResponse.Parser.Decode(result.Response);
            }
            catch (MalformedMessageException)
            {
                continue;
            }
            foreach (var model in status.Models.DistinctBy(m => m.Name))
            {
                if (!InferRequestRules.IsValidModelName(model.Name)) continue;
                if (!models.TryGetValue(model.Name, out var info))
                    models[model.Name] = info = new ModelInfo { Name = model.Name, Description = model.Description, MaxTokens = model.MaxTokens };
                info.Processors++;
                info.MaxTokens = Math.Max(info.MaxTokens, model.MaxTokens);
                if (info.Description.Length == 0) info.Description = model.Description;
            }
        }
        var response = new ModelsResponse();
        response.Models.AddRange(models.Values);
        var bytes = response.ToByteArray();
        state.Models = new CachedModels(bytes, fetchedAt);
        state.Logger.LogInformation("request {RequestId}: models: {Count} models on {Processors} processors", requestId, models.Count,
            results.Count(r => r.IsSuccess));
        return bytes;
    }

    // ---- inference -----------------------------------------------------------------------

    private async ValueTask<ReadOnlyMemory<byte>> InferAsync(ReadOnlyMemory<byte> payload, RpcCallContext context)
    {
        var state = Running;
        var (request, caller, asSent) = await PrepareAsync(state, payload, context, WorkerMethods.Gateway.Infer);
        var requestId = request.RequestId;
        using var scope = BeginScope(state.Logger, requestId, context);
        using var registration = _inFlight.Register(caller.UserId, requestId, context.CancellationToken);
        var tried = new HashSet<PeerId>();
        RpcException? last = null;
        // Whether every processor tried failed before the request reached it (a busy one did receive it).
        var allUnreached = true;
        var callOptions = ProcessorCallOptions(context, requestId);
        for (var attempt = 0; attempt < _options.ProcessorAttempts; attempt++)
        {
            var peer = await PickAsync(state, request.Model, tried, requestId, registration);
            if (peer is null) break;
            tried.Add(peer);
            using var lease = state.Picker.Acquire(peer);
            var body = BodyFor(state, request, peer, asSent, payload);
            try
            {
                var bytes = await state.Context.Client.RequestAsync(peer, WorkerMethods.Processor.Infer, body, callOptions, registration.Token);
                var response = ParseFromProcessor(InferResponse.Parser, bytes, peer);
                // The processor names the request, the model and itself: its bytes then go on as they came, without a second encoding.
                var complete = response.RequestId == requestId && response.Model.Length > 0 && response.Processor.Length > 0;
                response.RequestId = requestId;
                if (response.Model.Length == 0) response.Model = request.Model;
                if (response.Processor.Length == 0) response.Processor = peer.ToString();
                GatewayLog.Served(state.Logger, requestId, peer, response.Tokens, response.FinishReason);
                return complete ? bytes : response.ToByteArray();
            }
            catch (RpcException e) when (ProvablyNotStarted(e))
            {
                last = e;
                allUnreached &= NeverReached(e);
                OnProcessorFailed(state, request.Model, peer, e, requestId);
            }
            catch (RpcException e) when (IsWorthAnotherProcessor(e))
            {
                // The processor may have run the generation (in part or whole): running it again
                // elsewhere could double its cost and side effects, so the client decides.
                state.Logger.LogWarning("request {RequestId}: processor {Peer} failed after it got the request: {Code} {Message}; not retried elsewhere",
                    requestId, peer, e.Code, e.Message);
                if (e.Code is not (RpcStatusCode.ResourceExhausted or RpcStatusCode.Internal)) state.Picker.Evict(request.Model, peer);
                throw;
            }
            catch (OperationCanceledException) when (registration.Cancelled)
            {
                state.Logger.LogInformation("request {RequestId}: cancelled by {Who}", requestId, registration.CancelledBy);
                throw registration.CancelledError();
            }
        }
        throw NoProcessor(state, request.Model, tried.Count, last, allUnreached, requestId);
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> InferStreamAsync(ReadOnlyMemory<byte> payload, RpcCallContext context)
    {
        var state = Running;
        var (request, caller, asSent) = await PrepareAsync(state, payload, context, WorkerMethods.Gateway.InferStream);
        var requestId = request.RequestId;
        using var registration = _inFlight.Register(caller.UserId, requestId, context.CancellationToken);
        var tried = new HashSet<PeerId>();
        RpcException? last = null;
        var partial = new StringBuilder();
        var chunks = 0;
        // Whether every processor tried failed before the request reached it.
        var allUnreached = true;
        var callOptions = ProcessorCallOptions(context, requestId);
        for (var attempt = 0; attempt < _options.ProcessorAttempts; attempt++)
        {
            var peer = await PickAsync(state, request.Model, tried, requestId, registration);
            if (peer is null) break;
            tried.Add(peer);
            using var lease = state.Picker.Acquire(peer);
            var body = BodyFor(state, request, peer, asSent, payload);
            var items = state.Context.Client.RequestStreamAsync(peer, WorkerMethods.Processor.InferStream, body, callOptions, registration.Token);
            var enumerator = items.GetAsyncEnumerator(registration.Token);
            var failedOver = false;
            try
            {
                while (true)
                {
                    byte[]? item = null;
                    RpcException? failure = null;
                    try
                    {
                        if (await enumerator.MoveNextAsync()) item = enumerator.Current;
                    }
                    catch (RpcException e)
                    {
                        failure = e;
                    }
                    catch (OperationCanceledException) when (registration.Cancelled)
                    {
                        state.Logger.LogInformation("request {RequestId}: cancelled by {Who} after {Chunks} chunks", requestId, registration.CancelledBy, chunks);
                        throw WithPartialOutput(registration.CancelledError(), partial, chunks);
                    }
                    catch (OperationCanceledException) when (chunks > 0 && context.Deadline is { } && context.RemainingTime <= TimeSpan.Zero)
                    {
                        throw WithPartialOutput(new RpcException(RpcStatusCode.DeadlineExceeded, "the deadline passed during the stream"), partial, chunks);
                    }

                    InferChunk? chunk = null;
                    if (item is not null && failure is null)
                    {
                        try
                        {
                            chunk = ParseFromProcessor(InferChunk.Parser, item, peer);
                        }
                        catch (RpcException e)
                        {
                            failure = e;
                        }
                    }
                    if (failure is not null)
                    {
                        if (chunks == 0 && IsWorthAnotherProcessor(failure))
                        {
                            last = failure;
                            allUnreached &= NeverReached(failure);
                            OnProcessorFailed(state, request.Model, peer, failure, requestId);
                            failedOver = true;
                            break;
                        }
                        state.Logger.LogWarning("request {RequestId}: processor {Peer} failed after {Chunks} chunks: {Code} {Message}", requestId, peer, chunks,
                            failure.Code, failure.Message);
                        throw chunks == 0
                            ? failure
                            : WithPartialOutput(new RpcException(failure.Code, $"processor failed after {chunks} chunks: {failure.Message}", failure.Details),
                                partial, chunks);
                    }
                    if (chunk is null)
                    {
                        GatewayLog.StreamServed(state.Logger, requestId, peer, chunks);
                        yield break;
                    }
                    chunks++;
                    if (partial.Length < MaxPartialOutputChars)
                        partial.Append(chunk.Text.AsSpan(0, Math.Min(chunk.Text.Length, MaxPartialOutputChars - partial.Length)));
                    if (chunks == 1) GatewayLog.FirstChunk(state.Logger, requestId, peer);
                    // A chunk that already names the request and the processor goes on as it came, without a second encoding.
                    if (chunk.RequestId == requestId && chunk.Processor.Length > 0)
                    {
                        yield return item!;
                        continue;
                    }
                    chunk.RequestId = requestId;
                    if (chunk.Processor.Length == 0) chunk.Processor = peer.ToString();
                    yield return chunk.ToByteArray();
                }
            }
            finally
            {
                await enumerator.DisposeAsync();
            }
            if (!failedOver) yield break;
        }
        throw NoProcessor(state, request.Model, tried.Count, last, allUnreached, requestId);
    }

    /// <summary>
    /// Parse, authenticate, rate limit, check: everything before a processor is involved.
    /// <c>AsSent</c>: the gateway changed nothing in the request and its bytes hold nothing this
    /// gateway does not know, so they may go to a processor as they came.
    /// </summary>
    private async Task<(InferRequest Request, AuthenticatedCaller Caller, bool AsSent)> PrepareAsync(State state, ReadOnlyMemory<byte> payload,
        RpcCallContext context, string method)
    {
        try
        {
            var request = Parse(InferRequest.Parser, payload, InferRequestRules.MaxPayloadBytes(_options), method);
            if (request.RequestId.Length > 0 && !InferRequestRules.IsValidRequestId(request.RequestId))
                throw new RpcException(RpcStatusCode.InvalidArgument,
                    $"request_id must be 1 to {InferRequestRules.MaxRequestIdLength} printable ASCII characters without spaces");
            var asSent = request.RequestId.Length > 0 && InferRequestRules.HoldsOnlyKnownMembers(request, payload);
            if (request.RequestId.Length == 0) request.RequestId = NewRequestId(state);
            var requestId = request.RequestId;
            using var scope = BeginScope(state.Logger, requestId, context);
            GatewayLog.InferenceArrived(state.Logger, requestId, method, context.RemotePeer, context.RequestId, context.TraceId, request.Model);
            var caller = await AuthenticateAsync(state, context, requestId);
            Limit(state, caller.RateLimitKey, caller.Quota ?? _options.DefaultRateLimit, requestId);
            var (model, maxTokens) = (request.Model, request.MaxTokens);
            InferRequestRules.Normalize(request, _options);
            asSent &= ReferenceEquals(model, request.Model) && maxTokens == request.MaxTokens;
            GatewayLog.InferenceAllowed(state.Logger, requestId, caller.UserId, request.Model, request.MaxTokens);
            return (request, caller, asSent);
        }
        catch (RpcException e)
        {
            state.Logger.LogInformation("request {RequestId}: {Method} refused: {Code} {Message}", context.RequestId, method, e.Code, e.Message);
            throw;
        }
    }

    private static async Task<PeerId?> PickAsync(State state, string model, HashSet<PeerId> tried, string requestId, InFlightRequests.Registration registration)
    {
        try
        {
            return await state.Picker.PickAsync(model, tried, requestId, registration.Token);
        }
        catch (OperationCanceledException) when (registration.Cancelled)
        {
            throw registration.CancelledError();
        }
    }

    /// <summary>
    /// The request as <paramref name="peer"/> gets it: max_tokens per <see cref="InferRequestRules.ForwardedMaxTokens"/>;
    /// the client's bytes (<paramref name="payload"/>) when they are <paramref name="asSent"/> and already say exactly that.
    /// </summary>
    private ReadOnlyMemory<byte> BodyFor(State state, InferRequest request, PeerId peer, bool asSent, ReadOnlyMemory<byte> payload)
    {
        var requested = request.MaxTokens;
        var forwarded = InferRequestRules.ForwardedMaxTokens(requested, state.Picker.AdvertisedMaxTokens(request.Model, peer), _options);
        if (asSent && forwarded == requested) return payload;
        request.MaxTokens = forwarded;
        try
        {
            return request.ToByteArray();
        }
        finally
        {
            // The next processor tried may advertise another limit.
            request.MaxTokens = requested;
        }
    }

    private static RpcCallOptions ProcessorCallOptions(RpcCallContext context, string requestId) =>
        RpcCallOptions.FromContext(context) with { RequestId = requestId };

    /// <summary>Failures that say nothing about the request itself: another processor may well serve it.</summary>
    private static bool IsWorthAnotherProcessor(RpcException e) =>
        e.Code is RpcStatusCode.Unavailable or RpcStatusCode.ResourceExhausted or RpcStatusCode.Internal or RpcStatusCode.UnknownMethod
            or RpcStatusCode.NotFound or RpcStatusCode.PermissionDenied;

    /// <summary>
    /// A unary inference goes to another processor only when the first provably did not start it:
    /// the RPC layer knows the request never reached the handler, or the processor refused it
    /// outright (busy with a retry-after, not allowed, no such method or model) without any output.
    /// A lost connection, a handler failure or a deadline may come after the whole generation ran.
    /// </summary>
    private static bool ProvablyNotStarted(RpcException e)
    {
        if (e.Code is RpcStatusCode.DeadlineExceeded or RpcStatusCode.Cancelled) return false;
        if (e.NotDelivered) return true;
        if (e.Details.ContainsKey(WorkerMethods.PartialOutputDetail)) return false;
        return e.Code switch
        {
            // Without a retry-after it may be a response too large for the RPC limit: the work was done.
            RpcStatusCode.ResourceExhausted => e.RetryAfter is not null,
            RpcStatusCode.PermissionDenied or RpcStatusCode.UnknownMethod or RpcStatusCode.NotFound => true,
            _ => false,
        };
    }

    /// <summary>
    /// The request never reached this processor for a reason another gateway may not meet: unreachable, stopping, or
    /// refusing this gateway. Not a refusal every gateway would get too (busy, too large, unknown method): a client
    /// sent round the gateways with it would only carry the same processors' load round them.
    /// </summary>
    private static bool NeverReached(RpcException e) => e.NotDelivered && e.Code is RpcStatusCode.Unavailable or RpcStatusCode.PermissionDenied;

    private static void OnProcessorFailed(State state, string model, PeerId peer, RpcException e, string requestId)
    {
        // Busy or failing on this one request is not a reason to stop choosing it for others.
        if (e.Code is not (RpcStatusCode.ResourceExhausted or RpcStatusCode.Internal)) state.Picker.Evict(model, peer);
        state.Logger.LogWarning("request {RequestId}: processor {Peer} failed before the first token: {Code} {Message}; trying another",
            requestId, peer, e.Code, e.Message);
    }

    /// <remarks>
    /// A gateway that found processors of the model but could reach none of them, or whose processors all failed to
    /// receive the request, did none of the call's work: its refusal says so (<see cref="RpcException.RefusedBeforeAnyWork"/>),
    /// so a client's router may send even an inference to another gateway, which may reach them. Not when no processor
    /// announces the model (another gateway reads the same DHT, and a mistyped model would send each call round them
    /// all), nor when processors answered busy (the client would take the same processors' load round every gateway).
    /// </remarks>
    private static RpcException NoProcessor(State state, string model, int tried, RpcException? last, bool allUnreached, string requestId)
    {
        RpcException error;
        if (tried == 0 || last is null)
        {
            var unusable = state.Picker.Unusable(model);
            error = unusable == 0
                ? new RpcException(RpcStatusCode.Unavailable, $"no processor serves model '{model}'")
                : RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable,
                    $"no processor serves model '{model}' that this gateway can call: {unusable} found, none usable; another gateway may reach them");
        }
        else
        {
            var message = $"no processor could serve model '{model}': {tried} tried; last error: {last.Code}: {last.Message}";
            error = allUnreached
                ? RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable, message, last.Details)
                : new RpcException(RpcStatusCode.Unavailable, message, last.Details, last);
        }
        state.Logger.LogWarning("request {RequestId}: {Message}", requestId, error.Message);
        return error;
    }

    private static RpcException WithPartialOutput(RpcException error, StringBuilder partial, int chunks)
    {
        var details = new Dictionary<string, string>(error.Details, StringComparer.Ordinal)
        {
            [WorkerMethods.PartialOutputDetail] = partial.ToString(),
            ["partial_chunks"] = chunks.ToString(CultureInfo.InvariantCulture),
        };
        return new RpcException(error.Code, error.Message, details, error);
    }

    // ---- cancel -------------------------------------------------------------------------------

    private async ValueTask<ReadOnlyMemory<byte>> CancelAsync(ReadOnlyMemory<byte> payload, RpcCallContext context)
    {
        var state = Running;
        var request = Parse(CancelRequest.Parser, payload, _options.MaxAccountRequestBytes, WorkerMethods.Gateway.Cancel);
        if (!InferRequestRules.IsValidRequestId(request.RequestId))
            throw new RpcException(RpcStatusCode.InvalidArgument,
                $"request_id must be 1 to {InferRequestRules.MaxRequestIdLength} printable ASCII characters without spaces");
        using var scope = BeginScope(state.Logger, request.RequestId, context);
        var caller = await AuthenticateAsync(state, context, request.RequestId);
        var cancelled = _inFlight.Cancel(caller.UserId, request.RequestId);
        state.Logger.LogInformation("request {RequestId}: cancel from user {UserId}: {Outcome}", request.RequestId, caller.UserId,
            cancelled ? "cancelled" : "not running");
        return new CancelResponse { Cancelled = cancelled }.ToByteArray();
    }

    // ---- shared ----------------------------------------------------------------------------

    // Not a peer, address, user or key bucket name ("peer:", "address:", "refused-…:", "user:"), so no caller can share it by choice of name.
    private const string AllAccountCallsKey = "accounts";

    /// <summary>
    /// The caller's credential, validated by Auth (or its cache). A peer, or an address, whose
    /// credentials Auth kept refusing has a budget of refusals (<see cref="GatewayOptions.RefusedCredentialLimit"/>);
    /// past it, its calls are refused here, as rate-limited, without asking Auth.
    /// </summary>
    private async Task<AuthenticatedCaller> AuthenticateAsync(State state, RpcCallContext context, string requestId)
    {
        var quota = _options.RefusedCredentialLimit;
        var peerKey = "refused-peer:" + context.RemotePeer;
        var addressKey = context.RemoteOrigin is { } origin ? "refused-address:" + origin : null;
        foreach (var key in (ReadOnlySpan<string?>)[peerKey, addressKey])
        {
            if (key is null || state.Limiter.Peek(key, quota) is not { Allowed: false } decision) continue;
            state.Logger.LogInformation("request {RequestId}: too many refused credentials from {Key} ({Quota})", requestId, key, quota);
            throw RateLimited($"too many invalid credentials from this {(key == peerKey ? "peer" : "address")}", decision.RetryAfter);
        }
        try
        {
            return await state.Auth.AuthenticateAsync(context, requestId, context.CancellationToken);
        }
        catch (RpcException e) when (e.Code == RpcStatusCode.Unauthenticated)
        {
            state.Limiter.TryAcquire(peerKey, quota);
            if (addressKey is not null) state.Limiter.TryAcquire(addressKey, quota);
            throw;
        }
    }

    private void LimitPeer(State state, RpcCallContext context, string requestId) =>
        Limit(state, "peer:" + context.RemotePeer, _options.DefaultRateLimit, requestId);

    private static void Limit(State state, string key, RateLimitQuota quota, string requestId)
    {
        var decision = state.Limiter.TryAcquire(key, quota);
        if (decision.Allowed) return;
        state.Logger.LogInformation("request {RequestId}: rate limit of {Key} exceeded ({Quota})", requestId, key, quota);
        throw RateLimited($"rate limit exceeded ({quota})", decision.RetryAfter);
    }

    private static RpcException RateLimited(string why, TimeSpan retryAfter) =>
        RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted,
            $"{why}; retry in {Math.Ceiling(retryAfter.TotalSeconds).ToString(CultureInfo.InvariantCulture)} s", retryAfter);

    private static T Parse<T>(MessagePackRpcCodec<T> parser, ReadOnlyMemory<byte> payload, long maxBytes, string method)
        where T : class
    {
        if (payload.Length > maxBytes)
            throw new RpcException(RpcStatusCode.InvalidArgument, $"request to '{method}' is {payload.Length} bytes; the most is {maxBytes}");
        try
        {
            return parser.Decode(payload);
        }
        catch (MalformedMessageException e)
        {
            throw new RpcException(RpcStatusCode.InvalidArgument, $"malformed request to '{method}': {e.Message}");
        }
    }

    private static T ParseFromProcessor<T>(MessagePackRpcCodec<T> parser, byte[] bytes, PeerId peer)
        where T : class
    {
        try
        {
            return parser.Decode(bytes);
        }
        catch (MalformedMessageException e)
        {
            throw new RpcException(RpcStatusCode.Internal, $"processor {peer} sent a malformed answer: {e.Message}");
        }
    }

    private static string NewRequestId(State state)
    {
        Span<byte> bytes = stackalloc byte[12];
        lock (state.Context.Random) state.Context.Random.NextBytes(bytes);
        return "gw-" + Convert.ToHexStringLower(bytes);
    }

    private static IDisposable? BeginScope(ILogger logger, string requestId, RpcCallContext context) =>
        logger.BeginScope(new RequestLogScope(requestId, context.TraceId));

    private sealed record CachedModels(byte[] Bytes, long FetchedAt);

    private sealed class State(WorkerContext context, ILogger logger, AuthClient auth, ProcessorPicker picker, TokenBucketRateLimiter limiter)
    {
        public WorkerContext Context { get; } = context;
        public ILogger Logger { get; } = logger;
        public AuthClient Auth { get; } = auth;
        public ProcessorPicker Picker { get; } = picker;
        public TokenBucketRateLimiter Limiter { get; } = limiter;
        public CachedModels? Models { get; set; }
    }
}
