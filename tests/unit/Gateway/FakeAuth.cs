using System.Collections.Concurrent;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Gateway;

/// <summary>A stand-in Auth worker: the auth.proto contract served from dictionaries, counting calls.</summary>
internal sealed class FakeAuth
{
    private readonly ConcurrentDictionary<string, ValidateResponse> _apiKeys = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ValidateResponse> _tokens = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _users = new(StringComparer.Ordinal);
    private int _validateCalls;
    private int _nextKey;

    public FakeAuth(IRpcServer server)
    {
        server.Respond<ValidateRequest, ValidateResponse>(WorkerMethods.Auth.Validate, ValidateRequest.Parser, ValidateAsync);
        server.Respond<RegisterRequest, RegisterResponse>(WorkerMethods.Auth.Register, RegisterRequest.Parser, RegisterAsync);
        server.Respond<LoginRequest, LoginResponse>(WorkerMethods.Auth.Login, LoginRequest.Parser, LoginAsync);
        server.Respond<CreateApiKeyRequest, CreateApiKeyResponse>(WorkerMethods.Auth.CreateApiKey, CreateApiKeyRequest.Parser, CreateApiKeyAsync);
        server.Respond<ListApiKeysRequest, ListApiKeysResponse>(WorkerMethods.Auth.ListApiKeys, ListApiKeysRequest.Parser, ListApiKeysAsync);
    }

    public int ValidateCalls => Volatile.Read(ref _validateCalls);

    /// <summary>When set, every validation (still counted) fails with it: say, a refusal of the calling gateway itself.</summary>
    public RpcException? ValidateRefusal { get; set; }

    public ConcurrentQueue<(string Method, RpcCallContext Context)> Calls { get; } = new();

    /// <summary>A valid API key of <paramref name="userId"/>; the key id is <c>key-N</c>.</summary>
    public string AddApiKey(string userId = "user-1", Quota? quota = null)
    {
        var n = Interlocked.Increment(ref _nextKey);
        var key = $"pk_test_{n:D4}_secret";
        _apiKeys[key] = new ValidateResponse { UserId = userId, Email = userId + "@example.com", KeyId = $"key-{n}", Quota = quota };
        return key;
    }

    public string AddToken(string userId, DateTimeOffset expiresAt)
    {
        var token = $"tok.{userId}.{Interlocked.Increment(ref _nextKey)}";
        _tokens[token] = new ValidateResponse { UserId = userId, Email = userId + "@example.com", ExpiresAtUnixMs = expiresAt.ToUnixTimeMilliseconds() };
        return token;
    }

    public void Revoke(string apiKey) => _apiKeys.TryRemove(apiKey, out _);

    private ValueTask<ValidateResponse> ValidateAsync(ValidateRequest request, RpcCallContext context)
    {
        Interlocked.Increment(ref _validateCalls);
        Calls.Enqueue((WorkerMethods.Auth.Validate, context));
        if (ValidateRefusal is { } refusal) throw refusal;
        var found = request.CredentialCase switch
        {
            ValidateRequest.CredentialOneofCase.ApiKey => _apiKeys.GetValueOrDefault(request.ApiKey!),
            ValidateRequest.CredentialOneofCase.Token => _tokens.GetValueOrDefault(request.Token!),
            _ => throw new RpcException(RpcStatusCode.InvalidArgument, "credential is required"),
        };
        return found is null
            ? throw new RpcException(RpcStatusCode.Unauthenticated, "unknown, revoked or expired credential")
            : ValueTask.FromResult(found);
    }

    private ValueTask<RegisterResponse> RegisterAsync(RegisterRequest request, RpcCallContext context)
    {
        Calls.Enqueue((WorkerMethods.Auth.Register, context));
        if (!request.Email.Contains('@', StringComparison.Ordinal)) throw new RpcException(RpcStatusCode.InvalidArgument, "email is not an address");
        var userId = "user-" + request.Email;
        if (!_users.TryAdd(request.Email, request.Password)) throw new RpcException(RpcStatusCode.AlreadyExists, "email is registered already");
        return ValueTask.FromResult(new RegisterResponse { UserId = userId, Email = request.Email });
    }

    private ValueTask<LoginResponse> LoginAsync(LoginRequest request, RpcCallContext context)
    {
        Calls.Enqueue((WorkerMethods.Auth.Login, context));
        if (!_users.TryGetValue(request.Email, out var password) || password != request.Password)
            throw new RpcException(RpcStatusCode.Unauthenticated, "wrong email or password");
        var token = AddToken("user-" + request.Email, DateTimeOffset.MaxValue.AddYears(-1));
        return ValueTask.FromResult(new LoginResponse { Token = token, UserId = "user-" + request.Email, ExpiresAtUnixMs = 1 });
    }

    private ValueTask<CreateApiKeyResponse> CreateApiKeyAsync(CreateApiKeyRequest request, RpcCallContext context)
    {
        Calls.Enqueue((WorkerMethods.Auth.CreateApiKey, context));
        if (!_tokens.TryGetValue(request.Token, out var user)) throw new RpcException(RpcStatusCode.Unauthenticated, "invalid token");
        var key = AddApiKey(user.UserId);
        return ValueTask.FromResult(new CreateApiKeyResponse { ApiKey = key, KeyId = _apiKeys[key].KeyId, Name = request.Name });
    }

    private ValueTask<ListApiKeysResponse> ListApiKeysAsync(ListApiKeysRequest request, RpcCallContext context)
    {
        Calls.Enqueue((WorkerMethods.Auth.ListApiKeys, context));
        if (!_tokens.TryGetValue(request.Token, out var user)) throw new RpcException(RpcStatusCode.Unauthenticated, "invalid token");
        var response = new ListApiKeysResponse();
        response.Keys.AddRange(_apiKeys.Values.Where(k => k.UserId == user.UserId).Select(k => new ApiKeyInfo { KeyId = k.KeyId }));
        return ValueTask.FromResult(response);
    }
}
