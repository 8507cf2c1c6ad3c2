using System.Security.Cryptography;
using System.Text;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Store;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Workers.Auth;

/// <summary>
/// API keys: <c>p2pi_</c> followed by 32 random bytes in Base58. The key is returned once, at
/// creation; the store keeps only its SHA-256 hash, its last four characters, a name, the times
/// and the revoked flag.
/// </summary>
/// <remarks>
/// <para><b>Why a fast hash is enough.</b> A slow, salted hash (PBKDF2, as for passwords) exists to
/// make guessing low-entropy secrets expensive. An API key carries 256 bits from the CSPRNG: even
/// with the hashes in hand nobody can enumerate candidates, so SHA-256's preimage resistance already
/// protects it, and a single unsalted hash lets <see cref="FindActiveAsync"/> find the key by
/// direct lookup instead of trying every stored record. Looking up by hash also leaks nothing
/// through timing: a timing difference could reveal only bits of a hash, not of a key.</para>
/// <para><b>Layout.</b> <c>api-keys/&lt;key id&gt;</c> holds the <see cref="ApiKeyRecord"/>;
/// <c>user-key-lists/&lt;user id&gt;</c> lists a user's key ids in one record (read and swapped
/// whole, so listing and creating never scan the store; <c>user-api-keys/&lt;user id&gt;/&lt;key
/// id&gt;</c>, the older per-key index, is read once per user to build it); <c>api-key-hashes/&lt;hex
/// SHA-256&gt;</c> names the key id. They are written in that order and the hash entry, which makes the
/// key usable, comes last: a crash part-way leaves at most a listed key that never validates (its
/// secret was never shown), never a usable key its owner cannot see or revoke.</para>
/// </remarks>
public sealed class ApiKeyService
{
    public const string Prefix = "p2pi_";

    /// <summary>The longest API key we accept as input; ours are 48 or 49 characters.</summary>
    public const int MaxKeyLength = 64;

    public const int MaxNameLength = 64;

    private const int SecretBytes = 32;
    private const string KeyIdPrefix = "key_";

    private readonly IKeyValueStore _records;
    private readonly IKeyValueStore _byUser;
    private readonly IKeyValueStore _keyLists;
    private readonly IKeyValueStore _byHash;
    private readonly TimeProvider _time;
    private readonly int _maxKeysPerUser;
    private readonly IRandomSource _random;

    /// <param name="randomSource">Key secrets and ids. Null: the system CSPRNG; seeded only in simulations.</param>
    public ApiKeyService(IKeyValueStore store, TimeProvider timeProvider, int maxKeysPerUser = 100, IRandomSource? randomSource = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxKeysPerUser, 1);
        _records = store.SubStore("api-keys");
        _byUser = store.SubStore("user-api-keys");
        _keyLists = store.SubStore("user-key-lists");
        _byHash = store.SubStore("api-key-hashes");
        _time = timeProvider;
        _maxKeysPerUser = maxKeysPerUser;
        _random = randomSource ?? SystemRandomSource.Instance;
    }

    /// <summary>A new key from the system CSPRNG.</summary>
    public static string GenerateKey() => GenerateKey(SystemRandomSource.Instance);

    /// <summary>A new key from <paramref name="source"/>: the system CSPRNG, or a seeded source inside a simulation.</summary>
    public static string GenerateKey(IRandomSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Span<byte> secret = stackalloc byte[SecretBytes];
        source.Fill(secret);
        var key = Prefix + Base58.Encode(secret);
        CryptographicOperations.ZeroMemory(secret);
        return key;
    }

    /// <summary>True when <paramref name="apiKey"/> has the shape of one of our keys (nothing about whether it exists).</summary>
    public static bool IsWellFormed(string? apiKey)
    {
        if (apiKey is null || apiKey.Length > MaxKeyLength || !apiKey.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var body = apiKey.AsSpan(Prefix.Length);
        if (body.Length is < 32 or > 48)
        {
            return false;
        }

        foreach (var c in body)
        {
            // The Base58 alphabet: ASCII letters and digits without 0, O, I and l.
            if (!char.IsAsciiLetterOrDigit(c) || c is '0' or 'O' or 'I' or 'l')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>SHA-256 of the key's (ASCII) text: what the store keeps instead of the key.</summary>
    public static byte[] HashKey(string apiKey)
    {
        ArgumentNullException.ThrowIfNull(apiKey);
        return SHA256.HashData(Encoding.UTF8.GetBytes(apiKey));
    }

    /// <summary>True when <paramref name="keyId"/> has the shape of a key id.</summary>
    public static bool IsWellFormedKeyId(string? keyId) =>
        keyId is { Length: 36 } && keyId.StartsWith(KeyIdPrefix, StringComparison.Ordinal) && keyId.AsSpan(KeyIdPrefix.Length).ContainsAnyExcept("0123456789abcdef") is false;

    /// <summary>Creates a key for <paramref name="userId"/>. The returned secret is not stored anywhere.</summary>
    /// <exception cref="AuthException">InvalidArgument for a bad name; ResourceExhausted when the user has <c>maxKeysPerUser</c> unrevoked keys.</exception>
    public async Task<(ApiKeyRecord Record, string ApiKey)> CreateAsync(string userId, string? name, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(userId);
        var error = CheckName(name);
        if (error is not null)
        {
            throw AuthException.InvalidArgument(error);
        }

        var (listed, current) = await ReadKeyListAsync(userId, cancellationToken);
        (listed, var leaving) = await MakeRoomAsync(listed, cancellationToken);

        var apiKey = GenerateKey(_random);
        var hash = HashKey(apiKey);
        var record = new ApiKeyRecord
        {
            KeyId = NewKeyId(),
            UserId = userId,
            Name = name!,
            KeyHash = hash,
            Last4 = apiKey[^4..],
            CreatedAtUnixMs = _time.GetUtcNow().ToUnixTimeMilliseconds(),
        };
        await _records.PutMessageAsync(record.KeyId, record, ApiKeyRecord.Parser, cancellationToken);
        // Concurrent creations for one user race on the list; the loser reads it again and re-checks the cap.
        while (!await _keyLists.CompareAndSwapAsync(userId, current, EncodeKeyList([.. listed, record.KeyId]), cancellationToken))
        {
            (listed, current) = await ReadKeyListAsync(userId, cancellationToken);
            (listed, leaving) = await MakeRoomAsync(listed, cancellationToken);
        }

        // The swap took the departing keys out of the list, so nothing refers to them any more:
        // delete their hash entries, then their records, so creating and revoking in a loop keeps
        // the store bounded. A departed key stays refused: with no hash entry (or, after a crash
        // between the two deletes, no record) it is simply not valid.
        foreach (var departed in leaving)
        {
            if (departed.KeyHash.Length > 0)
            {
                // Only if it still names this key (a swap, not a blind delete).
                await _byHash.CompareAndSwapAsync(Convert.ToHexStringLower(departed.KeyHash), Encoding.ASCII.GetBytes(departed.KeyId), default(ReadOnlyMemory<byte>?), cancellationToken);
            }

            await _records.DeleteAsync(departed.KeyId, cancellationToken);
        }

        await _byHash.PutAsync(Convert.ToHexStringLower(hash), Encoding.ASCII.GetBytes(record.KeyId), cancellationToken);
        return (record, apiKey);
    }

    /// <summary>The user's keys, revoked ones included until a new key needs their place (see <see cref="MakeRoomAsync"/>), oldest first. Records hold hashes, never keys.</summary>
    public async Task<IReadOnlyList<ApiKeyRecord>> ListAsync(string userId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(userId);
        var keys = new List<ApiKeyRecord>();
        var (listed, _) = await ReadKeyListAsync(userId, cancellationToken);
        foreach (var keyId in listed)
        {
            var record = await _records.GetMessageAsync(keyId, ApiKeyRecord.Parser, cancellationToken);
            if (record is not null && record.UserId == userId)
            {
                keys.Add(record);
            }
        }

        return keys.OrderBy(k => k.CreatedAtUnixMs).ThenBy(k => k.KeyId, StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// <paramref name="listed"/> with room for one more key: unchanged while it is below the cap,
    /// otherwise without its oldest revoked keys. Only live keys count against the cap (a user who
    /// revoked their keys used to be refused a new one for ever), yet the list stays bounded by it, so
    /// creating and listing read at most the cap's worth of records. The keys that give way are
    /// returned too: once the list without them is swapped in, the caller deletes their records and
    /// hash entries (only then, since a lost swap leaves them listed).
    /// </summary>
    /// <exception cref="AuthException">ResourceExhausted when every listed key is live.</exception>
    private async Task<(List<string> Listed, List<ApiKeyRecord> Leaving)> MakeRoomAsync(List<string> listed, CancellationToken cancellationToken)
    {
        if (listed.Count < _maxKeysPerUser)
        {
            return (listed, []);
        }

        var revoked = new List<ApiKeyRecord>();
        foreach (var keyId in listed)
        {
            var record = await _records.GetMessageAsync(keyId, ApiKeyRecord.Parser, cancellationToken);
            // A listed id with no record holds no usable key, so it gives way like a revoked one.
            if (record is null)
            {
                revoked.Add(new ApiKeyRecord { KeyId = keyId });
            }
            else if (record.Revoked)
            {
                revoked.Add(record);
            }
        }

        var surplus = listed.Count - _maxKeysPerUser + 1;
        if (revoked.Count < surplus)
        {
            throw new AuthException(AuthErrorCode.ResourceExhausted, $"a user may hold at most {_maxKeysPerUser} live API keys; revoke one to create another");
        }

        var leaving = revoked.OrderBy(k => k.RevokedAtUnixMs).ThenBy(k => k.KeyId, StringComparer.Ordinal).Take(surplus).ToList();
        var leavingIds = leaving.Select(k => k.KeyId).ToHashSet(StringComparer.Ordinal);
        return ([.. listed.Where(id => !leavingIds.Contains(id))], leaving);
    }

    /// <summary>
    /// The user's key ids from their list record, and its stored bytes (for a compare-and-swap). A
    /// user whose keys were made before the list existed has theirs collected once from the old
    /// per-key index (a prefix scan) and written as the list, so no later call scans.
    /// </summary>
    private async Task<(List<string> KeyIds, byte[]? Stored)> ReadKeyListAsync(string userId, CancellationToken cancellationToken)
    {
        while (true)
        {
            var stored = await _keyLists.GetAsync(userId, cancellationToken);
            if (stored is not null)
            {
                return (DecodeKeyList(stored), stored);
            }

            var migrated = new List<string>();
            await foreach (var entry in _byUser.ScanAsync(userId + "/", cancellationToken))
            {
                migrated.Add(entry.Key[(userId.Length + 1)..]);
            }

            var encoded = EncodeKeyList(migrated);
            if (await _keyLists.CompareAndSwapAsync(userId, null, encoded, cancellationToken))
            {
                return (migrated, encoded);
            }
        }
    }

    private static byte[] EncodeKeyList(IEnumerable<string> keyIds) => Encoding.ASCII.GetBytes(string.Join('\n', keyIds));

    private static List<string> DecodeKeyList(byte[] stored) =>
        stored.Length == 0 ? [] : [.. Encoding.ASCII.GetString(stored).Split('\n')];

    /// <summary>Revokes <paramref name="keyId"/> if <paramref name="userId"/> owns it; false when it already was revoked.</summary>
    /// <exception cref="AuthException">InvalidArgument for a malformed id, NotFound for an unknown key, PermissionDenied for another user's key.</exception>
    public async Task<bool> RevokeAsync(string userId, string? keyId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(userId);
        if (string.IsNullOrEmpty(keyId))
        {
            throw AuthException.InvalidArgument("key_id is required");
        }

        if (!IsWellFormedKeyId(keyId))
        {
            throw AuthException.InvalidArgument("key_id is malformed");
        }

        // Another writer (a concurrent revoke) can only set the same flag, so this loop ends.
        while (true)
        {
            var raw = await _records.GetAsync(keyId, cancellationToken)
                ?? throw new AuthException(AuthErrorCode.NotFound, "no such API key");
            var record = ParseRecord(keyId, raw);
            if (record.UserId != userId)
            {
                throw new AuthException(AuthErrorCode.PermissionDenied, "the API key belongs to another user");
            }

            if (record.Revoked)
            {
                return false;
            }

            var revoked = record.Clone();
            revoked.Revoked = true;
            revoked.RevokedAtUnixMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
            if (await _records.CompareAndSwapAsync(keyId, raw, revoked.ToByteArray(), cancellationToken))
            {
                return true;
            }
        }
    }

    /// <summary>The record of an active key.</summary>
    /// <exception cref="AuthException">Unauthenticated: malformed, unknown or revoked.</exception>
    public async Task<ApiKeyRecord> FindActiveAsync(string? apiKey, CancellationToken cancellationToken)
    {
        if (!IsWellFormed(apiKey))
        {
            throw AuthException.Unauthenticated("API key is malformed");
        }

        var hash = HashKey(apiKey!);
        var keyId = await _byHash.GetAsync(Convert.ToHexStringLower(hash), cancellationToken)
            ?? throw AuthException.Unauthenticated("API key is not valid");
        var id = Encoding.ASCII.GetString(keyId);
        var record = await _records.GetMessageAsync(id, ApiKeyRecord.Parser, cancellationToken);
        if (record is null || !CryptographicOperations.FixedTimeEquals(record.KeyHash, hash))
        {
            throw AuthException.Unauthenticated("API key is not valid");
        }

        return record.Revoked ? throw AuthException.Unauthenticated("API key has been revoked") : record;
    }

    /// <summary>Null when <paramref name="name"/> is an acceptable key name, otherwise why not.</summary>
    public static string? CheckName(string? name)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            return "name is required";
        }

        if (name.Length > MaxNameLength)
        {
            return $"name is longer than {MaxNameLength} characters";
        }

        if (name.Any(char.IsControl) || !PasswordPolicy.IsEncodable(name))
        {
            return "name must be printable text";
        }

        return null;
    }

    private static ApiKeyRecord ParseRecord(string keyId, byte[] raw)
    {
        try
        {
            return ApiKeyRecord.Parser.Decode(raw);
        }
        catch (MalformedMessageException e)
        {
            throw new StoreException($"The value under key '{keyId}' is not a valid ApiKeyRecord: {e.Message}", inner: e);
        }
    }

    private string NewKeyId() => KeyIdPrefix + _random.NextHex(16);

}
