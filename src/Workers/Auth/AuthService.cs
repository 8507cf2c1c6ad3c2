using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Store;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Workers.Auth;

/// <summary>
/// The Auth worker's domain logic: accounts, logins, API keys and credential validation, over a
/// durable <see cref="IKeyValueStore"/>. Each method takes the contract's request and returns its
/// response, so an RPC handler is one line; a refusal is an <see cref="AuthException"/> whose code
/// names the RPC status.
/// </summary>
/// <remarks>
/// Every request is checked in full (presence, size, policy) before the store is touched, and a
/// refused request changes nothing stored. Replies are sent only after the writes behind them are
/// durable (the store's contract), so a registered user or a created key survives a crash.
/// </remarks>
public sealed class AuthService
{
    private const string BadLogin = "invalid email or password";

    private readonly AuthOptions _options;
    private readonly TimeProvider _time;
    private readonly UserStore _users;
    private readonly PasswordHasher _hasher;
    private readonly JwtIssuer _issuer;
    private readonly Lazy<string> _decoyHash;
    private readonly IRandomSource _random;
    private readonly TokenRevocations _revocations;

    /// <param name="randomSource">Salts, user, token and key ids, API keys. Null: the system CSPRNG; seeded only in simulations.</param>
    public AuthService(IKeyValueStore store, KeyPair signingKey, AuthOptions options, TimeProvider timeProvider, IRandomSource? randomSource = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(signingKey);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        options.Validate();
        _options = options;
        _time = timeProvider;
        _random = randomSource ?? SystemRandomSource.Instance;
        _users = new UserStore(store);
        _revocations = new TokenRevocations(store, timeProvider, options.ClockSkew);
        _hasher = new PasswordHasher(options.PasswordIterations, _random);
        _issuer = new JwtIssuer(signingKey, options.Issuer, options.TokenLifetime, timeProvider, _random);
        TokenValidator = new JwtValidator(signingKey.PublicKey, options.Issuer, timeProvider, options.ClockSkew);
        ApiKeys = new ApiKeyService(store, timeProvider, options.MaxApiKeysPerUser, _random);
        Throttle = new LoginThrottle(options.LoginThrottle, timeProvider);

        // Logins for unknown emails verify against this, so they cost what a wrong password costs
        // and response time does not tell which emails have accounts.
        _decoyHash = new Lazy<string>(() => _hasher.Hash(_random.NextHex(16)));
    }

    /// <summary>The key that verifies this worker's tokens.</summary>
    public PublicKey PublicKey => _issuer.PublicKey;

    /// <summary>Validates tokens standalone (no store access): signature, issuer, times.</summary>
    public JwtValidator TokenValidator { get; }

    public ApiKeyService ApiKeys { get; }

    public LoginThrottle Throttle { get; }

    /// <exception cref="AuthException">InvalidArgument (email or password policy), AlreadyExists (email taken, in any letter case).</exception>
    public async Task<RegisterResponse> RegisterAsync(RegisterRequest request, CancellationToken cancellationToken)
    {
        var email = NormalizeEmail(Require(request).Email);
        var passwordError = PasswordPolicy.Check(request.Password, _options);
        if (passwordError is not null)
        {
            throw AuthException.InvalidArgument(passwordError);
        }

        // The common duplicate is refused without writing anything; the compare-and-swap below
        // settles the race between concurrent registrations.
        if (await _users.FindByEmailAsync(email, cancellationToken) is not null)
        {
            throw AlreadyRegistered();
        }

        var user = new UserRecord
        {
            UserId = NewUserId(),
            Email = email,
            PasswordHash = _hasher.Hash(request.Password),
            CreatedAtUnixMs = _time.GetUtcNow().ToUnixTimeMilliseconds(),
        };
        if (!await _users.TryCreateAsync(user, cancellationToken))
        {
            throw AlreadyRegistered();
        }

        return new RegisterResponse { UserId = user.UserId, Email = email };
    }

    /// <exception cref="AuthException">
    /// InvalidArgument (malformed request), Unauthenticated (unknown email or wrong password — one
    /// message for both), ResourceExhausted (throttled; see <see cref="AuthException.RetryAfter"/>).
    /// </exception>
    public async Task<LoginResponse> LoginAsync(LoginRequest request, CancellationToken cancellationToken)
    {
        var email = NormalizeEmail(Require(request).Email);
        if (string.IsNullOrEmpty(request.Password))
        {
            throw AuthException.InvalidArgument("password is required");
        }

        if (request.Password.Length > _options.MaxPasswordLength)
        {
            throw AuthException.InvalidArgument($"password is longer than {_options.MaxPasswordLength} characters");
        }

        Throttle.BeginAttempt(email);
        var user = await _users.FindByEmailAsync(email, cancellationToken);
        var matches = PasswordHasher.Verify(request.Password, user?.PasswordHash ?? _decoyHash.Value);
        if (user is null || !matches)
        {
            throw AuthException.Unauthenticated(BadLogin);
        }

        Throttle.Succeeded(email);
        if (_hasher.NeedsRehash(user.PasswordHash))
        {
            // Best effort: the iteration count was changed; if the record moved meanwhile, the next login retries.
            var upgraded = user.Clone();
            upgraded.PasswordHash = _hasher.Hash(request.Password);
            await _users.TryReplaceAsync(user, upgraded, cancellationToken);
        }

        var (token, claims) = _issuer.Issue(user.UserId, user.Email, ValidFrom(user));
        return new LoginResponse { Token = token, ExpiresAtUnixMs = claims.ExpiresAt.ToUnixTimeMilliseconds(), UserId = user.UserId };
    }

    /// <exception cref="AuthException">InvalidArgument (bad name), Unauthenticated (bad token), ResourceExhausted (too many keys).</exception>
    public async Task<CreateApiKeyResponse> CreateApiKeyAsync(CreateApiKeyRequest request, CancellationToken cancellationToken)
    {
        RequireToken(Require(request).Token);
        var nameError = ApiKeyService.CheckName(request.Name);
        if (nameError is not null)
        {
            throw AuthException.InvalidArgument(nameError);
        }

        var (user, _) = await AuthenticateTokenAsync(request.Token, cancellationToken);
        var (record, apiKey) = await ApiKeys.CreateAsync(user.UserId, request.Name, cancellationToken);
        return new CreateApiKeyResponse { KeyId = record.KeyId, ApiKey = apiKey, Name = record.Name, CreatedAtUnixMs = record.CreatedAtUnixMs };
    }

    /// <exception cref="AuthException">InvalidArgument (no token), Unauthenticated (bad token).</exception>
    public async Task<ListApiKeysResponse> ListApiKeysAsync(ListApiKeysRequest request, CancellationToken cancellationToken)
    {
        RequireToken(Require(request).Token);
        var (user, _) = await AuthenticateTokenAsync(request.Token, cancellationToken);
        var response = new ListApiKeysResponse();
        foreach (var key in await ApiKeys.ListAsync(user.UserId, cancellationToken))
        {
            response.Keys.Add(new ApiKeyInfo
            {
                KeyId = key.KeyId,
                Name = key.Name,
                CreatedAtUnixMs = key.CreatedAtUnixMs,
                Revoked = key.Revoked,
                RevokedAtUnixMs = key.RevokedAtUnixMs,
                Last4 = key.Last4,
            });
        }

        return response;
    }

    /// <exception cref="AuthException">InvalidArgument (missing or malformed id), Unauthenticated (bad token), NotFound, PermissionDenied (another user's key).</exception>
    public async Task<RevokeApiKeyResponse> RevokeApiKeyAsync(RevokeApiKeyRequest request, CancellationToken cancellationToken)
    {
        RequireToken(Require(request).Token);
        if (string.IsNullOrEmpty(request.KeyId))
        {
            throw AuthException.InvalidArgument("key_id is required");
        }

        if (!ApiKeyService.IsWellFormedKeyId(request.KeyId))
        {
            throw AuthException.InvalidArgument("key_id is malformed");
        }

        var (user, _) = await AuthenticateTokenAsync(request.Token, cancellationToken);
        var newlyRevoked = await ApiKeys.RevokeAsync(user.UserId, request.KeyId, cancellationToken);
        return new RevokeApiKeyResponse { KeyId = request.KeyId, NewlyRevoked = newlyRevoked };
    }

    /// <summary>Revokes the presented token: from now on Auth refuses it, though it has not expired.</summary>
    /// <exception cref="AuthException">InvalidArgument (no token), Unauthenticated (bad, expired or already revoked token).</exception>
    public async Task<LogoutResponse> LogoutAsync(LogoutRequest request, CancellationToken cancellationToken)
    {
        RequireToken(Require(request).Token);
        var (user, claims) = await AuthenticateTokenAsync(request.Token, cancellationToken);
        await _revocations.RevokeAsync(claims, cancellationToken);
        return new LogoutResponse { UserId = user.UserId, ExpiresAtUnixMs = claims.ExpiresAt.ToUnixTimeMilliseconds() };
    }

    /// <summary>
    /// Revokes every token of the presenting token's user issued until now, this one included; logins
    /// from now on get tokens that are accepted. API keys are not affected (they are revoked one by one).
    /// </summary>
    /// <exception cref="AuthException">InvalidArgument (no token), Unauthenticated (bad, expired or revoked token).</exception>
    public async Task<RevokeAllTokensResponse> RevokeAllTokensAsync(RevokeAllTokensRequest request, CancellationToken cancellationToken)
    {
        RequireToken(Require(request).Token);
        var (user, _) = await AuthenticateTokenAsync(request.Token, cancellationToken);
        // iat has whole seconds, so "before now" must take in the whole current second: the next
        // second is the first from which tokens are valid again (and logins date theirs from it).
        var validFrom = (_time.GetUtcNow().ToUnixTimeSeconds() + 1) * 1000;
        while (true)
        {
            if (user.TokensValidFromUnixMs >= validFrom)
            {
                validFrom = user.TokensValidFromUnixMs;
                break;
            }

            var updated = user.Clone();
            updated.TokensValidFromUnixMs = validFrom;
            if (await _users.TryReplaceAsync(user, updated, cancellationToken)) break;

            // Changed meanwhile (a password rehash, a concurrent revoke): apply to what is there now.
            user = await _users.FindByIdAsync(user.UserId, cancellationToken)
                ?? throw AuthException.Unauthenticated("the token's user does not exist");
        }

        return new RevokeAllTokensResponse { UserId = user.UserId, RevokedBeforeUnixMs = validFrom };
    }

    /// <summary>Who an API key or token belongs to, and their quota.</summary>
    /// <exception cref="AuthException">InvalidArgument (no credential), Unauthenticated (malformed, unknown, forged, expired or revoked; or the user is gone).</exception>
    public async Task<ValidateResponse> ValidateAsync(ValidateRequest request, CancellationToken cancellationToken)
    {
        switch (Require(request).CredentialCase)
        {
            case ValidateRequest.CredentialOneofCase.ApiKey:
            {
                if (string.IsNullOrEmpty(request.ApiKey))
                {
                    throw AuthException.InvalidArgument("api_key is empty");
                }

                var key = await ApiKeys.FindActiveAsync(request.ApiKey, cancellationToken);
                var user = await _users.FindByIdAsync(key.UserId, cancellationToken)
                    ?? throw AuthException.Unauthenticated("API key is not valid");
                return new ValidateResponse { UserId = user.UserId, Email = user.Email, Quota = QuotaOf(user), KeyId = key.KeyId };
            }

            case ValidateRequest.CredentialOneofCase.Token:
            {
                RequireToken(request.Token);
                var (user, claims) = await AuthenticateTokenAsync(request.Token!, cancellationToken);
                return new ValidateResponse { UserId = user.UserId, Email = user.Email, Quota = QuotaOf(user), ExpiresAtUnixMs = claims.ExpiresAt.ToUnixTimeMilliseconds() };
            }

            default:
                throw AuthException.InvalidArgument("an api_key or a token is required");
        }
    }

    private async Task<(UserRecord User, JwtClaims Claims)> AuthenticateTokenAsync(string token, CancellationToken cancellationToken)
    {
        var claims = TokenValidator.Validate(token);
        var user = await _users.FindByIdAsync(claims.Subject, cancellationToken)
            ?? throw AuthException.Unauthenticated("the token's user does not exist");
        if (claims.IssuedAt < ValidFrom(user) || await _revocations.IsRevokedAsync(claims, cancellationToken))
        {
            throw AuthException.Unauthenticated("the token has been revoked");
        }

        return (user, claims);
    }

    private static DateTimeOffset ValidFrom(UserRecord user) => DateTimeOffset.FromUnixTimeMilliseconds(user.TokensValidFromUnixMs);

    private Quota QuotaOf(UserRecord user) =>
        user.Quota?.Clone() ?? new Quota { RequestsPerMinute = _options.DefaultQuota.RequestsPerMinute, Burst = _options.DefaultQuota.Burst };

    private static T Require<T>(T? request)
        where T : class =>
        request ?? throw AuthException.InvalidArgument("request is missing");

    private static void RequireToken(string? token)
    {
        if (string.IsNullOrEmpty(token))
        {
            throw AuthException.InvalidArgument("token is required");
        }
    }

    private static string NormalizeEmail(string? email) =>
        EmailAddress.TryNormalize(email, out var normalized, out var error) ? normalized : throw AuthException.InvalidArgument(error);

    private static AuthException AlreadyRegistered() => new(AuthErrorCode.AlreadyExists, "an account with this email already exists");

    private string NewUserId() => "usr_" + _random.NextHex(16);
}
