using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Store;
using P2PInference.TestKit;
using P2PInference.TestKit.Store;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Contracts.Auth;

namespace P2PInference.Tests.Unit.Auth;

/// <summary>One Auth service per test: its own RAM store, fake clock and seeded signing key.</summary>
internal sealed class AuthHarness : IAsyncDisposable
{
    public const string Password = "correct horse 42 battery";

    private int _users;

    private AuthHarness(RamStore store, FakeTimeProvider time, KeyPair key, AuthOptions options)
    {
        Store = store;
        Time = time;
        Key = key;
        Options = options;
        Service = new AuthService(store, key, options, time);
    }

    public RamStore Store { get; }

    public FakeTimeProvider Time { get; }

    public KeyPair Key { get; }

    public AuthOptions Options { get; }

    public AuthService Service { get; private set; }

    /// <summary>Test settings: cheap hashing (1000 iterations), everything else at its default unless changed.</summary>
    public static AuthOptions TestOptions(Action<AuthOptions>? configure = null)
    {
        var options = new AuthOptions { PasswordIterations = AuthOptions.MinPasswordIterations };
        configure?.Invoke(options);
        return options;
    }

    public static async Task<AuthHarness> CreateAsync(Action<AuthOptions>? configure = null)
    {
        var random = TestSeed.CreateRandom();
        var store = await RamStore.CreateAsync();
        return new AuthHarness(store, new FakeTimeProvider(), KeyPair.FromRandom(random), TestOptions(configure));
    }

    /// <summary>Kills the store and builds a fresh service on what survived (as a restarted worker would).</summary>
    public async Task CrashAndRestartAsync(CancellationToken cancellationToken)
    {
        await Store.CrashAndRestartAsync(cancellationToken);
        Service = new AuthService(Store, Key, Options, Time);
    }

    /// <summary>A fresh email per call, so tests never share a user.</summary>
    public string NewEmail() => $"user{Interlocked.Increment(ref _users)}@example.com";

    public async Task<(string Email, string UserId)> RegisterAsync(CancellationToken cancellationToken)
    {
        var email = NewEmail();
        var response = await Service.RegisterAsync(new RegisterRequest { Email = email, Password = Password }, cancellationToken);
        return (email, response.UserId);
    }

    public async Task<(string Email, string UserId, string Token)> RegisterAndLoginAsync(CancellationToken cancellationToken)
    {
        var (email, userId) = await RegisterAsync(cancellationToken);
        var login = await Service.LoginAsync(new LoginRequest { Email = email, Password = Password }, cancellationToken);
        return (email, userId, login.Token);
    }

    /// <summary>Every stored entry, to show that a refused request changed nothing.</summary>
    public async Task<Dictionary<string, string>> SnapshotAsync(CancellationToken cancellationToken)
    {
        var entries = new Dictionary<string, string>(StringComparer.Ordinal);
        await foreach (var entry in ((IKeyValueStore)Store).ScanAsync(string.Empty, cancellationToken))
        {
            entries[entry.Key] = Convert.ToHexString(entry.Value);
        }

        return entries;
    }

    public ValueTask DisposeAsync() => Store.DisposeAsync();
}
