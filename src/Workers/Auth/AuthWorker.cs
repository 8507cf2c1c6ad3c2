using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Hosting;

namespace P2PInference.Workers.Auth;

/// <summary>
/// The Auth worker: serves <see cref="AuthService"/> over RPC (<see cref="WorkerMethods.Auth"/>,
/// the contracts in Contracts/Auth) and announces <see cref="WorkerTopics.Auth"/>. Its tokens are signed with
/// the node's identity key, so anyone who knows its PeerId can verify them.
/// </summary>
public sealed class AuthWorker : IWorker
{
    private readonly AuthOptions _options;
    private ILogger? _logger;

    public AuthWorker(AuthOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    public string Role => "auth";

    /// <summary>The service behind the RPC methods; null before start.</summary>
    public AuthService? Service { get; private set; }

    public Task<IReadOnlyList<string>> StartAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        _logger = context.LoggerFactory.CreateLogger<AuthWorker>();
        var service = new AuthService(context.Store.SubStore("auth"), context.Identity, _options, context.Time, context.RandomSource);
        Service = service;
        var server = context.Server;
        Serve(server, WorkerMethods.Auth.Register, RegisterRequest.Parser, service.RegisterAsync);
        Serve(server, WorkerMethods.Auth.Login, LoginRequest.Parser, service.LoginAsync);
        Serve(server, WorkerMethods.Auth.CreateApiKey, CreateApiKeyRequest.Parser, service.CreateApiKeyAsync);
        Serve(server, WorkerMethods.Auth.ListApiKeys, ListApiKeysRequest.Parser, service.ListApiKeysAsync);
        Serve(server, WorkerMethods.Auth.RevokeApiKey, RevokeApiKeyRequest.Parser, service.RevokeApiKeyAsync);
        Serve(server, WorkerMethods.Auth.Logout, LogoutRequest.Parser, service.LogoutAsync);
        Serve(server, WorkerMethods.Auth.RevokeAllTokens, RevokeAllTokensRequest.Parser, service.RevokeAllTokensAsync);
        Serve(server, WorkerMethods.Auth.Validate, ValidateRequest.Parser, service.ValidateAsync);
        return Task.FromResult<IReadOnlyList<string>>([WorkerTopics.Auth]);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>The RPC status an Auth refusal is answered with: the same name (AuthErrorCode mirrors the RPC codes).</summary>
    public static RpcException ToRpc(AuthException error)
    {
        ArgumentNullException.ThrowIfNull(error);
        var code = error.Code switch
        {
            AuthErrorCode.InvalidArgument => RpcStatusCode.InvalidArgument,
            AuthErrorCode.Unauthenticated => RpcStatusCode.Unauthenticated,
            AuthErrorCode.PermissionDenied => RpcStatusCode.PermissionDenied,
            AuthErrorCode.NotFound => RpcStatusCode.NotFound,
            AuthErrorCode.AlreadyExists => RpcStatusCode.AlreadyExists,
            AuthErrorCode.ResourceExhausted => RpcStatusCode.ResourceExhausted,
            _ => RpcStatusCode.Internal,
        };
        return error.RetryAfter is { } retryAfter
            ? RpcException.WithRetryAfter(code, error.Message, retryAfter)
            : new RpcException(code, error.Message);
    }

    private void Serve<TRequest, TResponse>(IRpcServer server, string method, MessagePackRpcCodec<TRequest> parser,
        Func<TRequest, CancellationToken, Task<TResponse>> handle)
        where TRequest : class
        where TResponse : class
    {
        server.Respond<TRequest, TResponse>(method, parser, async (request, call) =>
        {
            try
            {
                return await handle(request, call.CancellationToken);
            }
            catch (AuthException e)
            {
                _logger?.LogDebug("{Method} from {Peer} refused: {Code} {Message}", method, call.RemotePeer, e.Code, e.Message);
                throw ToRpc(e);
            }
        });
    }
}
