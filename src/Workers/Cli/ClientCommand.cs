using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.Workers.Client;
using P2PInference.Workers.Client.OpenAi;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Workers.Cli;

/// <summary>
/// <c>p2pinference client …</c>: register, login, logout, keys create|list|revoke, models, infer. Every
/// command takes <c>--bootstrap</c> (repeatable; remembered in the profile), <c>--profile</c> and
/// <c>--json</c>; errors are one line on stderr and exit 1.
/// </summary>
internal static class ClientCommand
{
    public const int Success = 0;
    public const int Failure = 1;

    private static readonly JsonSerializerOptions OneLine = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static Command Create(TextWriter output, TextWriter error) => Create(output, error, ClientCommandEnvironment.Default());

    internal static Command Create(TextWriter output, TextWriter error, ClientCommandEnvironment environment)
    {
        var shared = new SharedOptions(environment.DefaultProfilePath);
        var command = new Command("client", "Use a P2PInference network as a client: account, API keys, models, inference");
        shared.AddTo(command);
        command.Subcommands.Add(CreateRegister(output, error, environment, shared));
        command.Subcommands.Add(CreateLogin(output, error, environment, shared));
        command.Subcommands.Add(CreateLogout(output, error, environment, shared));
        command.Subcommands.Add(CreateKeys(output, error, environment, shared));
        command.Subcommands.Add(CreateModels(output, error, environment, shared));
        command.Subcommands.Add(CreateInfer(output, error, environment, shared));
        command.Subcommands.Add(CreateServe(output, error, environment, shared));
        return command;
    }

    /// <summary>Runs <c>client</c> with <paramref name="args"/> (without the word <c>client</c>) in-process, for tests.</summary>
    internal static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, ClientCommandEnvironment environment)
    {
        var root = new RootCommand("test") { Create(output, error, environment) };
        var config = new InvocationConfiguration { Output = output, Error = error, ProcessTerminationTimeout = null };
        return root.Parse(["client", .. args]).InvokeAsync(config);
    }

    private static Command CreateRegister(TextWriter output, TextWriter error, ClientCommandEnvironment environment, SharedOptions shared)
    {
        var email = EmailOption();
        var passwordStdin = PasswordStdinOption();
        var command = new Command("register", "Create an account") { email, passwordStdin };
        command.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            var address = result.GetValue(email)!;
            var password = await ReadPasswordAsync(environment, confirm: true, ct);
            await using var client = await session.ConnectAsync();
            var response = await client.RegisterAsync(address, password, ct);
            session.Profile.Email = response.Email;
            await session.SaveProfileAsync();
            await session.WriteAsync(new { userId = response.UserId, email = response.Email },
                $"registered {response.Email} (user {response.UserId}); now run: p2pinference client login --email {response.Email}");
        }));
        return command;
    }

    private static Command CreateLogin(TextWriter output, TextWriter error, ClientCommandEnvironment environment, SharedOptions shared)
    {
        var email = EmailOption();
        var passwordStdin = PasswordStdinOption();
        var command = new Command("login", "Log in; the token is kept in the profile") { email, passwordStdin };
        command.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            var address = result.GetValue(email)!;
            var password = await ReadPasswordAsync(environment, confirm: false, ct);
            await using var client = await session.ConnectAsync();
            var response = await client.LoginAsync(address, password, ct);
            var expires = DateTimeOffset.FromUnixTimeMilliseconds(response.ExpiresAtUnixMs);
            session.Profile.Email = address.Trim().ToLowerInvariant();
            session.Profile.Token = response.Token;
            session.Profile.TokenExpiresAt = expires;
            await session.SaveProfileAsync();
            await session.WriteAsync(new { userId = response.UserId, email = session.Profile.Email, expiresAt = expires },
                $"logged in as {session.Profile.Email} until {expires.ToString("u", CultureInfo.InvariantCulture)}; the token is kept in {session.ProfilePath}");
        }));
        return command;
    }

    private static Command CreateLogout(TextWriter output, TextWriter error, ClientCommandEnvironment environment, SharedOptions shared)
    {
        var all = new Option<bool>("--all") { Description = "Revoke every login token of the account (other machines too), not only this one; API keys stay valid" };
        var command = new Command("logout", "Revoke the login token and remove it from the profile") { all };
        command.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            var everywhere = result.GetValue(all);
            await using var client = await session.ConnectAsync(requireLogin: true);
            try
            {
                if (everywhere)
                {
                    var response = await client.RevokeAllTokensAsync(ct);
                    var before = DateTimeOffset.FromUnixTimeMilliseconds(response.RevokedBeforeUnixMs);
                    await ForgetTokenAsync(session);
                    await session.WriteAsync(new { userId = response.UserId, revokedBefore = before, all = true },
                        $"logged out everywhere: every token issued before {before.ToString("u", CultureInfo.InvariantCulture)} is revoked");
                }
                else
                {
                    var response = await client.LogoutAsync(ct);
                    await ForgetTokenAsync(session);
                    await session.WriteAsync(new { userId = response.UserId, all = false }, "logged out: the token is revoked and removed from the profile");
                }
            }
            catch (RpcException e) when (e.Code == RpcStatusCode.Unauthenticated)
            {
                // The token is no good anyway (revoked elsewhere, or expired): keeping it helps nobody.
                await ForgetTokenAsync(session);
                throw;
            }
        }));
        return command;
    }

    private static async Task ForgetTokenAsync(Session session)
    {
        session.Profile.Token = null;
        session.Profile.TokenExpiresAt = null;
        await session.SaveProfileAsync();
    }

    private static Command CreateKeys(TextWriter output, TextWriter error, ClientCommandEnvironment environment, SharedOptions shared)
    {
        var keys = new Command("keys", "Manage API keys (needs a login)");

        var name = new Option<string?>("--name") { Description = "A label to tell the key apart (default: key-YYYY-MM-DD, today in UTC)" };
        var create = new Command("create", "Create an API key: printed once, and kept in the profile as the key infer uses") { name };
        create.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            await using var client = await session.ConnectAsync(requireLogin: true);
            var response = await client.CreateApiKeyAsync(result.GetValue(name), ct);
            session.Profile.ApiKey = response.ApiKey;
            session.Profile.ApiKeyId = response.KeyId;
            await session.SaveProfileAsync();
            await session.WriteAsync(new
            {
                keyId = response.KeyId,
                apiKey = response.ApiKey,
                name = response.Name,
                createdAt = DateTimeOffset.FromUnixTimeMilliseconds(response.CreatedAtUnixMs),
            },
                $"key id:  {response.KeyId}\napi key: {response.ApiKey}\nThe key is shown only now; it is kept in {session.ProfilePath} for `infer`.");
        }));

        var list = new Command("list", "List your API keys");
        list.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            await using var client = await session.ConnectAsync(requireLogin: true);
            var all = await client.ListApiKeysAsync(ct);
            var rows = all.Select(k => new
            {
                keyId = k.KeyId,
                name = k.Name,
                last4 = k.Last4,
                createdAt = DateTimeOffset.FromUnixTimeMilliseconds(k.CreatedAtUnixMs),
                revoked = k.Revoked,
            }).ToArray();
            var text = rows.Length == 0
                ? "no API keys"
                : string.Join('\n', rows.Select(r => string.Create(CultureInfo.InvariantCulture,
                    $"{r.keyId}  …{r.last4}  {r.createdAt:u}  {(r.revoked ? "revoked" : "active")}  {r.name}")));
            await session.WriteAsync(rows, text);
        }));

        var id = new Argument<string>("id") { Description = "The key's id, as keys list shows it" };
        var revoke = new Command("revoke", "Revoke an API key; it stops working at once") { id };
        revoke.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            var keyId = result.GetValue(id)!;
            await using var client = await session.ConnectAsync(requireLogin: true);
            var response = await client.RevokeApiKeyAsync(keyId, ct);
            if (session.Profile.ApiKeyId == response.KeyId)
            {
                session.Profile.ApiKey = null;
                session.Profile.ApiKeyId = null;
                await session.SaveProfileAsync();
            }
            await session.WriteAsync(new { keyId = response.KeyId, newlyRevoked = response.NewlyRevoked },
                response.NewlyRevoked ? $"revoked {response.KeyId}" : $"{response.KeyId} was revoked already");
        }));

        keys.Subcommands.Add(create);
        keys.Subcommands.Add(list);
        keys.Subcommands.Add(revoke);
        return keys;
    }

    private static Command CreateModels(TextWriter output, TextWriter error, ClientCommandEnvironment environment, SharedOptions shared)
    {
        var command = new Command("models", "List the models the network serves");
        command.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            await using var client = await session.ConnectAsync();
            var models = await client.ModelsAsync(ct);
            var rows = models.Select(m => new { name = m.Name, description = m.Description, maxTokens = m.MaxTokens, processors = m.Processors }).ToArray();
            var text = rows.Length == 0
                ? "no models served"
                : string.Join('\n', rows.Select(r => string.Create(CultureInfo.InvariantCulture,
                    $"{r.name}  max {r.maxTokens} tokens  {r.processors} processor(s)  {r.description}")));
            await session.WriteAsync(rows, text);
        }));
        return command;
    }

    private static Command CreateInfer(TextWriter output, TextWriter error, ClientCommandEnvironment environment, SharedOptions shared)
    {
        var prompt = new Argument<string>("prompt") { Description = "The text to continue" };
        var model = new Option<string?>("--model", "-m") { Description = $"Model to use (default: the profile's, else {BuiltinEngineOptions.DefaultModelName})" };
        var stream = new Option<bool>("--stream") { Description = "Print tokens as they arrive" };
        var apiKeyStdin = new Option<bool>("--api-key-stdin") { Description = $"Read the API key to use from standard input (else ${ApiKeyVariable}, else the profile's)" };
        // Refused, not unknown: a key on the command line is visible to every user of the machine (ps, /proc).
        var apiKeyArgument = new Option<string?>("--api-key") { Hidden = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens to generate (0: the processor's default)" };
        var temperature = new Option<double>("--temperature") { Description = "0 (greedy) to 2", DefaultValueFactory = _ => 0.8 };
        var seed = new Option<long?>("--seed") { Description = "Same seed, same output" };
        var command = new Command("infer", "Generate text") { prompt, model, stream, apiKeyStdin, apiKeyArgument, maxTokens, temperature, seed };
        command.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            var request = new InferRequest
            {
                Prompt = result.GetValue(prompt)!,
                Model = result.GetValue(model) ?? session.Profile.DefaultModel ?? BuiltinEngineOptions.DefaultModelName,
                MaxTokens = result.GetValue(maxTokens),
                Temperature = result.GetValue(temperature),
            };
            if (result.GetValue(seed) is { } s) request.Seed = s;
            if (result.GetResult(apiKeyArgument) is not null)
                throw new ArgumentException($"--api-key would show the key to every user of this machine; pass it with --api-key-stdin or ${ApiKeyVariable}");
            var key = await ApiKeyAsync(environment, result.GetValue(apiKeyStdin), ct) ?? session.Profile.ApiKey;
            var token = session.Profile.HasValidToken(environment.Time) ? session.Profile.Token : null;
            if (string.IsNullOrEmpty(key) && token is null)
                throw new ArgumentException($"no API key: run `p2pinference client keys create`, or give one with --api-key-stdin or ${ApiKeyVariable}");
            await using var client = await session.ConnectAsync(apiKey: key);
            if (result.GetValue(stream))
                await StreamAsync(client, request, session, ct);
            else
                await InferOnceAsync(client, request, session, ct);
        }));
        return command;
    }

    private static Command CreateServe(TextWriter output, TextWriter error, ClientCommandEnvironment environment, SharedOptions shared)
    {
        var listen = new Option<string>("--listen")
        {
            Description = $"IP:PORT to serve on (default {OpenAiServer.DefaultListen}: this machine only; port 0 picks a free one)",
            DefaultValueFactory = _ => OpenAiServer.DefaultListen.ToString(),
        };
        var command = new Command("serve",
            "Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) that forwards over the network, until Ctrl+C")
        {
            listen,
        };
        command.SetAction((result, ct) => Run(result, output, error, environment, shared, ct, async session =>
        {
            var text = result.GetValue(listen)!;
            if (!System.Net.IPEndPoint.TryParse(text, out var endpoint) || text.IndexOf(':', StringComparison.Ordinal) < 0)
                throw new ArgumentException($"--listen '{text}' is not IP:PORT (e.g. 127.0.0.1:8080)");
            var key = await ApiKeyAsync(environment, fromStdin: false, ct) ?? session.Profile.ApiKey;
            await using var client = await session.ConnectAsync(apiKey: key);
            await using var server = await OpenAiServer.StartAsync(endpoint, client, environment.LoggerFactory, ct);
            var credentials = !string.IsNullOrEmpty(key) ? "the profile's API key"
                : client.Token is not null ? "the profile's login"
                : "none: each request must send Authorization: Bearer <API key>";
            // Caught from before the ready line: whoever reads it may signal at once.
            using var shutdown = ShutdownSignal.Listen();
            await session.WriteAsync(new { address = server.Address.ToString(), credentials },
                $"client serve ready: {server.Address} (OpenAI-compatible; default credentials: {credentials}); Ctrl+C stops");
            await session.Output.FlushAsync(ct);
            // SIGINT or SIGTERM: stopping is the normal end of serving; requests in flight are cancelled across the network.
            await shutdown.WaitAsync(ct);
        }));
        return command;
    }

    private static async Task StreamAsync(P2PInferenceClient client, InferRequest request, Session session, CancellationToken ct)
    {
        var wroteText = false;
        try
        {
            await foreach (var chunk in client.InferStreamAsync(request, ct))
            {
                if (session.Json)
                {
                    await session.Output.WriteLineAsync(JsonSerializer.Serialize(new
                    {
                        requestId = chunk.RequestId,
                        index = chunk.Index,
                        text = chunk.Text,
                        finishReason = NullIfEmpty(chunk.FinishReason),
                        processor = NullIfEmpty(chunk.Processor),
                    }, OneLine));
                }
                else if (chunk.Text.Length > 0)
                {
                    await session.Output.WriteAsync(chunk.Text);
                    wroteText = true;
                }
                await session.Output.FlushAsync(ct);
            }
        }
        finally
        {
            // The error line (if any) must start on a line of its own.
            if (wroteText) await session.Output.WriteLineAsync();
        }
    }

    private static async Task InferOnceAsync(P2PInferenceClient client, InferRequest request, Session session, CancellationToken ct)
    {
        InferResponse response;
        try
        {
            response = await client.InferAsync(request, ct);
        }
        catch (RpcException e) when (!session.Json && P2PInferenceClient.PartialOutputOf(e) is { } partial)
        {
            await session.Output.WriteLineAsync(partial);
            throw;
        }
        await session.WriteAsync(new
        {
            requestId = response.RequestId,
            model = response.Model,
            text = response.Text,
            tokens = response.Tokens,
            finishReason = NullIfEmpty(response.FinishReason),
            processor = NullIfEmpty(response.Processor),
        }, response.Text);
    }

    private static async Task<int> Run(ParseResult result, TextWriter output, TextWriter error, ClientCommandEnvironment environment, SharedOptions shared,
        CancellationToken cancellationToken, Func<Session, Task> action)
    {
        var json = result.GetValue(shared.Json);
        try
        {
            var path = result.GetValue(shared.Profile) ?? environment.DefaultProfilePath;
            var profile = await ClientProfile.LoadAsync(path, cancellationToken);
            var session = new Session(result, shared, environment, profile, path, output, json, cancellationToken);
            try
            {
                await action(session);
            }
            finally
            {
                // Also after a failure: a gateway refused as revoked is refused because of a list just learned.
                await session.KeepLearnedRevocationsAsync();
            }
            return Success;
        }
        catch (Exception e) when (Describe(e) is var (code, message))
        {
            await error.WriteLineAsync(json
                ? JsonSerializer.Serialize(new { error = new { code, message } }, OneLine)
                : "error: " + message);
            return Failure;
        }
    }

    /// <summary>One line for every failure: RPC errors by code, the rest as the other commands word them.</summary>
    internal static (string Code, string Message)? Describe(Exception e)
    {
        switch (e)
        {
            case RpcException rpc:
                var text = rpc.Code switch
                {
                    RpcStatusCode.Unauthenticated => "not authenticated: " + rpc.Message,
                    RpcStatusCode.PermissionDenied => "permission denied: " + rpc.Message,
                    RpcStatusCode.Unavailable => "unavailable: " + rpc.Message,
                    RpcStatusCode.DeadlineExceeded => "timed out: " + rpc.Message,
                    RpcStatusCode.ResourceExhausted when rpc.RetryAfter is { } wait =>
                        string.Create(CultureInfo.InvariantCulture, $"busy: {rpc.Message} (retry in {wait.TotalSeconds:0.#} s)"),
                    RpcStatusCode.ResourceExhausted => "busy: " + rpc.Message,
                    RpcStatusCode.InvalidArgument => "invalid input: " + rpc.Message,
                    RpcStatusCode.NotFound => "not found: " + rpc.Message,
                    RpcStatusCode.AlreadyExists => "already exists: " + rpc.Message,
                    _ => $"{rpc.Code}: {rpc.Message}",
                };
                return (rpc.Code.ToString(), OneLineOf(text));
            case OperationCanceledException:
                return ("Cancelled", "cancelled");
            case ProfileException p:
                return ("InvalidArgument", OneLineOf(p.Message));
        }
        return CliErrors.Describe(e) is { } described
            ? (e is ArgumentException or FormatException ? "InvalidArgument" : "Error", OneLineOf(described))
            : ("Internal", OneLineOf("unexpected failure: " + e.Message));
    }

    private static string OneLineOf(string text) => text.ReplaceLineEndings(" ");

    /// <summary>The environment variable an API key may come from, for scripts and services.</summary>
    public const string ApiKeyVariable = Hosting.WorkerConfigurationSources.ClientApiKeyVariable;

    /// <summary>The API key from standard input (when asked for) or the environment; null: use the profile's.</summary>
    private static async Task<string?> ApiKeyAsync(ClientCommandEnvironment environment, bool fromStdin, CancellationToken ct)
    {
        if (fromStdin)
        {
            var line = await environment.Input.ReadLineAsync(ct);
            return string.IsNullOrWhiteSpace(line) ? throw new ArgumentException("--api-key-stdin: standard input held no key") : line.Trim();
        }
        var variable = environment.Variable(ApiKeyVariable);
        return string.IsNullOrWhiteSpace(variable) ? null : variable.Trim();
    }

    private static async Task<string> ReadPasswordAsync(ClientCommandEnvironment environment, bool confirm, CancellationToken ct)
    {
        string? password;
        if (!environment.InputIsTerminal)
        {
            password = await environment.Input.ReadLineAsync(ct);
            if (password is null) throw new ArgumentException("no password on standard input (pipe it in, or run in a terminal to be prompted)");
        }
        else
        {
            password = environment.ReadSecret("Password: ", ct) ?? string.Empty;
            if (confirm && password.Length > 0 && environment.ReadSecret("Repeat password: ", ct) != password)
                throw new ArgumentException("the passwords do not match");
        }
        if (password.Length == 0) throw new ArgumentException("the password is empty");
        return password;
    }

    private static Option<string> EmailOption() => new("--email") { Description = "The account's e-mail address", Required = true };

    private static Option<bool> PasswordStdinOption() => new("--password-stdin")
    {
        Description = "Read the password from standard input (its first line); on a terminal it is prompted for without echo. Never an argument.",
    };

    private static string? NullIfEmpty(string text) => text.Length == 0 ? null : text;

    /// <summary>The options every client command takes; recursive, so they go before or after the subcommand.</summary>
    private sealed class SharedOptions(string defaultProfilePath)
    {
        public Option<string[]> Bootstrap { get; } = new("--bootstrap")
        {
            Description = "Bootstrap peer, a full multiaddr ending in /p2p/<PeerId> (repeatable; remembered in the profile)",
            Recursive = true,
        };

        public Option<string?> Cluster { get; } = new("--cluster")
        {
            Description = "The cluster id (from `p2pinference cluster init`): only gateways granted by it get credentials (remembered in the profile)",
            Recursive = true,
        };

        public Option<string?> Revocations { get; } = new("--revocation-list")
        {
            Description = "The operator's revocation list (grant serials and PeerIds, one a line): gateways whose grant is on it get no credentials " +
                          "(the path is remembered in the profile; every command rereads the file)",
            Recursive = true,
        };

        public Option<string> Profile { get; } = new("--profile")
        {
            Description = "Profile file with the login token, API key and bootstrap peers",
            DefaultValueFactory = _ => defaultProfilePath,
            Recursive = true,
        };

        public Option<bool> Json { get; } = new("--json") { Description = "Print machine-readable JSON instead of text", Recursive = true };

        public void AddTo(Command command)
        {
            command.Options.Add(Bootstrap);
            command.Options.Add(Cluster);
            command.Options.Add(Revocations);
            command.Options.Add(Profile);
            command.Options.Add(Json);
        }
    }

    /// <summary>One command run: its profile, output mode and the way it joins the network.</summary>
    private sealed class Session(ParseResult result, SharedOptions shared, ClientCommandEnvironment environment, ClientProfile profile, string profilePath,
        TextWriter output, bool json, CancellationToken cancellationToken)
    {
        public ClientProfile Profile { get; } = profile;

        public string ProfilePath { get; } = profilePath;

        public TextWriter Output { get; } = output;

        public bool Json { get; } = json;

        private bool _profileChanged;

        public async Task<P2PInferenceClient> ConnectAsync(bool requireLogin = false, string? apiKey = null)
        {
            var given = result.GetValue(shared.Bootstrap) ?? [];
            var texts = given.Length > 0 ? given : Profile.Bootstrap.ToArray();
            if (texts.Length == 0)
                throw new ArgumentException("--bootstrap is required (a full multiaddr ending in /p2p/<PeerId>); it is remembered in the profile afterwards");
            var bootstrap = texts.Select(CliOptions.ParseAddress).ToArray();
            foreach (var address in bootstrap)
            {
                if (address.PeerId is null) throw new FormatException($"bootstrap address '{address}' does not end in /p2p/<PeerId>");
            }
            if (given.Length > 0 && !given.SequenceEqual(Profile.Bootstrap))
            {
                Profile.Bootstrap = [.. given];
                _profileChanged = true;
            }
            var clusterText = result.GetValue(shared.Cluster);
            if (clusterText is not null && clusterText != Profile.Cluster)
            {
                _ = ClusterId.Parse(clusterText);
                Profile.Cluster = clusterText.Trim();
                _profileChanged = true;
            }
            var cluster = Profile.Cluster is { } known ? ClusterId.Parse(known) : null;
            if (result.GetValue(shared.Revocations) is { } revocationPath && Path.GetFullPath(revocationPath) != Profile.RevocationList)
            {
                Profile.RevocationList = Path.GetFullPath(revocationPath);
                _profileChanged = true;
            }
            // The clients' copy of what the workers reread: without it a client would still trust a gateway whose grant the operator revoked.
            var revocations = Profile.RevocationList is { } listPath ? RevocationList.Load(listPath) : RevocationList.Empty;
            string? token = null;
            if (Profile.HasValidToken(environment.Time)) token = Profile.Token;
            else if (requireLogin)
                throw new ProfileException(string.IsNullOrEmpty(Profile.Token)
                    ? "not logged in: run `p2pinference client login --email E`"
                    : "the login has expired: run `p2pinference client login --email E`");
            var client = await environment.Connect(bootstrap, new ClientOptions
            {
                Token = token, ApiKey = apiKey ?? Profile.ApiKey, ClusterId = cluster, Revocations = revocations, SignedRevocations = KnownSignedRevocations(),
            }, cancellationToken);
            _connected = client;
            if (_profileChanged) await SaveProfileAsync();
            return client;
        }

        private P2PInferenceClient? _connected;

        /// <summary>The signed revocation list the profile keeps; null when none, or when what it keeps does not decode (it is replaced by the next one learned).</summary>
        private SignedRevocationList? KnownSignedRevocations()
        {
            if (Profile.SignedRevocations is not { } text) return null;
            try
            {
                return SignedRevocationList.FromText(text);
            }
            catch (FormatException)
            {
                return null;
            }
        }

        /// <summary>Keeps a signed revocation list newer than the profile's that a gateway handed on during the command.</summary>
        public async Task KeepLearnedRevocationsAsync()
        {
            if (_connected?.SignedRevocations is not { } learned) return;
            var text = learned.ToText();
            if (text == Profile.SignedRevocations) return;
            Profile.SignedRevocations = text;
            await SaveProfileAsync();
        }

        public async Task SaveProfileAsync()
        {
            await Profile.SaveAsync(ProfilePath, cancellationToken);
            _profileChanged = false;
        }

        public async Task WriteAsync(object jsonValue, string text) =>
            await Output.WriteLineAsync(Json ? JsonSerializer.Serialize(jsonValue, OneLine) : text);
    }

    /// <summary>The profile does not allow the command (e.g. no login yet).</summary>
    private sealed class ProfileException(string message) : Exception(message);
}
