using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Workers.Gateway;

/// <summary>
/// The gateway's calls to Auth (any provider of <see cref="WorkerTopics.Auth"/>): the served call's
/// remaining deadline (capped by <see cref="GatewayOptions.BackendTimeout"/>), trace and request id go
/// along, and Auth's answers become errors a client can act on: Auth's own refusals pass through as
/// they are, Auth being unreachable is <see cref="RpcStatusCode.Unavailable"/> "auth unavailable".
/// Credentials are validated through the <see cref="CredentialCache"/>.
/// </summary>
internal sealed class AuthClient
{
    private readonly IRpcClient _client;
    private readonly CredentialCache _cache;
    private readonly GatewayOptions _options;
    private readonly ILogger _logger;

    public AuthClient(IRpcClient client, CredentialCache cache, GatewayOptions options, ILogger logger)
    {
        _client = client;
        _cache = cache;
        _options = options;
        _logger = logger;
    }

    /// <summary>Who the call's credential belongs to.</summary>
    /// <exception cref="RpcException">Unauthenticated (missing, malformed, forged, expired, revoked), Unavailable (Auth unreachable, or
    /// refusing this gateway itself), DeadlineExceeded.</exception>
    public async Task<AuthenticatedCaller> AuthenticateAsync(RpcCallContext context, string requestId, CancellationToken cancellationToken)
    {
        var credential = GatewayCredential.FromMetadata(context.Metadata);
        if (_cache.TryGet(credential, out var cached, out var refusal))
        {
            if (refusal is not null) throw new RpcException(refusal.Code, refusal.Message);
            GatewayLog.CredentialFromCache(_logger, requestId, credential, cached!.UserId);
            return cached;
        }
        var request = credential.Kind == CredentialKind.ApiKey ? new ValidateRequest { ApiKey = credential.Value } : new ValidateRequest { Token = credential.Value };
        ValidateResponse response;
        try
        {
            response = await CallAsync(WorkerMethods.Auth.Validate, request, ValidateResponse.Parser, context, requestId, idempotent: true, cancellationToken);
        }
        catch (RpcException e) when (e.Code == RpcStatusCode.PermissionDenied)
        {
            // auth.validate never refuses a credential with PermissionDenied: Auth is refusing this gateway (an Auth
            // whose trust refusals predate the not-delivered mark answers so too). Not the user's fault, and not cached.
            _logger.LogWarning("request {RequestId}: auth refuses this gateway: {Message}", requestId, e.Message);
            throw NotAuthorizedByAuth(e);
        }
        catch (RpcException e) when (!e.NotDelivered && e.Code is RpcStatusCode.Unauthenticated or RpcStatusCode.InvalidArgument or RpcStatusCode.NotFound)
        {
            // Whatever Auth's handler disliked about it, to the caller the credential is simply not valid. (An error
            // marked not delivered never is a verdict on the credential: Auth's handler did not see it.)
            var refused = new RpcException(RpcStatusCode.Unauthenticated, $"invalid credential: {e.Message}");
            _cache.AddRefused(credential, refused);
            _logger.LogInformation("request {RequestId}: credential {Credential} refused: {Reason}", requestId, credential, e.Message);
            throw refused;
        }
        if (response.UserId.Length == 0)
            throw new RpcException(RpcStatusCode.Internal, "auth accepted the credential but named no user");
        RateLimitQuota? quota = response.Quota is { } q && new RateLimitQuota(q.RequestsPerMinute, q.Burst) is { IsValid: true } valid ? valid : null;
        DateTimeOffset? expires = response.ExpiresAtUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(response.ExpiresAtUnixMs) : null;
        var caller = new AuthenticatedCaller(response.UserId, response.Email, response.KeyId, quota, expires);
        _cache.AddAccepted(credential, caller);
        _logger.LogDebug("request {RequestId}: credential {Credential} of user {UserId} validated by auth", requestId, credential, caller.UserId);
        return caller;
    }

    /// <summary>After a logout or "revoke all" went through this gateway, its cached verdicts must not outlive the revocation.</summary>
    public void Forget(GatewayCredential credential, string? allTokensOfUser)
    {
        _cache.Remove(credential);
        if (allTokensOfUser is { Length: > 0 }) _cache.RemoveTokensOf(allTokensOfUser);
    }

    /// <summary>
    /// Auth refuses this gateway itself (its grant expired, was revoked or is outside the clock-skew window; a firewall):
    /// no credential and no request is at fault, and every user of this gateway would get the same. Unavailable, so
    /// callers go to another gateway, and a refusal before any of the call's work (<see cref="RpcException.RefusedBeforeAnyWork"/>):
    /// the gateway authenticates before it does anything else, and Auth did nothing, so even a call that is not
    /// idempotent may be sent to another gateway at once.
    /// </summary>
    private static RpcException NotAuthorizedByAuth(RpcException e) =>
        RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable, $"this gateway is not authorized by auth: {e.Message}; try another gateway");

    /// <summary>One call to Auth on behalf of the call being served.</summary>
    public async Task<TResponse> CallAsync<TRequest, TResponse>(string method, TRequest request, MessagePackRpcCodec<TResponse> parser,
        RpcCallContext context, string requestId, bool idempotent, CancellationToken cancellationToken)
        where TRequest : class
        where TResponse : class
    {
        var options = RpcCallOptions.FromContext(context, idempotent) with { RequestId = requestId, Timeout = _options.BackendTimeout };
        try
        {
            return await _client.RequestTopicAsync(WorkerTopics.Auth, method, request, parser, options, cancellationToken);
        }
        catch (RpcException e)
        {
            var mapped = Map(e, context);
            if (mapped.Code is RpcStatusCode.Unavailable or RpcStatusCode.Internal)
                _logger.LogWarning("request {RequestId}: {Method} failed: {Code} {Message}", requestId, method, e.Code, e.Message);
            throw mapped;
        }
    }

    private RpcException Map(RpcException e, RpcCallContext context)
    {
        switch (e.Code)
        {
            case RpcStatusCode.PermissionDenied when e.NotDelivered:
                // Refused before Auth's handler (its trust layer or firewall): a refusal of this gateway, not a verdict on the request.
                return NotAuthorizedByAuth(e);
            case RpcStatusCode.Unavailable or RpcStatusCode.UnknownMethod or RpcStatusCode.Cancelled:
                return new RpcException(RpcStatusCode.Unavailable, $"auth unavailable: {e.Message}", e.Details, e);
            case RpcStatusCode.DeadlineExceeded when context.RemainingTime is not { } left || left > TimeSpan.Zero:
                // Our own cap ran out, not the caller's deadline: Auth is too slow or unreachable.
                return new RpcException(RpcStatusCode.Unavailable, $"auth unavailable: no answer within {_options.BackendTimeout.TotalSeconds:0.###} s", innerException: e);
            case RpcStatusCode.Internal:
                return new RpcException(RpcStatusCode.Internal, $"auth failed: {e.Message}", e.Details, e);
            default:
                return new RpcException(e.Code, e.Message, e.Details, e);
        }
    }
}
