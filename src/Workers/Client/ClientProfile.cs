using System.Text.Json;
using System.Text.Json.Serialization;

namespace P2PInference.Workers.Client;

/// <summary>
/// What the CLI remembers between commands: where to join the network, the login token and the
/// API key <c>infer</c> uses. A JSON file readable by its owner only (mode 0600), since it holds
/// credentials.
/// </summary>
public sealed class ClientProfile
{
    /// <summary>A profile larger than this is refused rather than read into memory.</summary>
    public const int MaxFileBytes = 1024 * 1024;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Bootstrap multiaddrs used when a command gives none.</summary>
    public List<string> Bootstrap { get; set; } = [];

    /// <summary>The cluster id whose gateways get this profile's credentials.</summary>
    public string? Cluster { get; set; }

    /// <summary>The operator's revocation list file (full path): gateways whose grant is on it get no credentials.</summary>
    public string? RevocationList { get; set; }

    /// <summary>
    /// The newest signed revocation list the gateways handed on (its text), so that the next command refuses a gateway
    /// it revokes from the start, even one that withholds it.
    /// </summary>
    public string? SignedRevocations { get; set; }

    public string? Email { get; set; }

    public string? Token { get; set; }

    public DateTimeOffset? TokenExpiresAt { get; set; }

    /// <summary>The API key <c>infer</c> sends unless given another.</summary>
    public string? ApiKey { get; set; }

    public string? ApiKeyId { get; set; }

    public string? DefaultModel { get; set; }

    /// <summary><c>~/.p2pinference/profile.json</c>.</summary>
    public static string DefaultPath =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".p2pinference", "profile.json");

    /// <summary>True when there is a token that has not expired at <paramref name="time"/>'s now.</summary>
    public bool HasValidToken(TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(time);
        return !string.IsNullOrEmpty(Token) && (TokenExpiresAt is null || TokenExpiresAt > time.GetUtcNow());
    }

    /// <summary>The profile at <paramref name="path"/>, or an empty one when the file does not exist.</summary>
    /// <exception cref="InvalidDataException">The file is too large or not a profile.</exception>
    public static async Task<ClientProfile> LoadAsync(string path, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) return new ClientProfile();
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096, useAsync: true);
        if (stream.Length > MaxFileBytes)
            throw new InvalidDataException($"profile {path} is {stream.Length} bytes, more than the {MaxFileBytes} a profile may be");
        try
        {
            return await JsonSerializer.DeserializeAsync<ClientProfile>(stream, Json, cancellationToken) ?? new ClientProfile();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"profile {path} is not a valid profile: {e.Message}", e);
        }
    }

    /// <summary>Writes the profile atomically (a temporary file, then a rename), readable by the owner only.</summary>
    public async Task SaveAsync(string path, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(directory))
        {
            if (OperatingSystem.IsWindows()) Directory.CreateDirectory(directory);
            else Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        var temporary = full + ".tmp";
        var fileOptions = new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            Share = FileShare.None,
            Options = FileOptions.Asynchronous,
        };
        if (!OperatingSystem.IsWindows()) fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            await using (var stream = new FileStream(temporary, fileOptions))
            {
                await JsonSerializer.SerializeAsync(stream, this, Json, cancellationToken);
            }
            // A leftover temporary file from another user's umask must not widen the mode.
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }
}
