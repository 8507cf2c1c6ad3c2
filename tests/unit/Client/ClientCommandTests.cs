using System.Text.Json;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Cli;
using P2PInference.Workers.Client;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Client;

/// <summary><c>p2pinference client …</c> run in-process against a fake gateway on the twins.</summary>
[CancelAfter(10_000)]
public sealed class ClientCommandTests
{
    private const string Bootstrap = "/memory/boot/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    private FakeTimeProvider _time = null!;
    private InMemoryRpcNetwork _network = null!;
    private MockDhtRegistry _registry = null!;
    private FakeGateway _gateway = null!;
    private string _directory = null!;
    private string _profilePath = null!;
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<ClientOptions> _connects = [];

    [SetUp]
    public async Task CreateAsync()
    {
        _time = new FakeTimeProvider();
        _network = new InMemoryRpcNetwork(_time);
        _registry = new MockDhtRegistry(_time, TestSeed.Choose());
        _gateway = new FakeGateway(_network, _registry, "gw");
        await _gateway.AnnounceAsync();
        _directory = Directory.CreateTempSubdirectory("p2pinference-cli-").FullName;
        _profilePath = Path.Combine(_directory, "profile.json");
        _connects.Clear();
    }

    [TearDown]
    public async Task DisposeAsync()
    {
        foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
        _owned.Clear();
        await _gateway.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private ClientCommandEnvironment Environment(string stdin = "right\n", bool terminal = false, Func<string, string?>? prompt = null,
        Dictionary<string, string>? variables = null) => new()
    {
        Connect = (_, options, _) =>
        {
            _connects.Add(options);
            var peer = KeyPair.FromRandom(TestSeed.CreateRandom()).PeerId;
            var dht = _registry.CreateNode(peer, []);
            var node = _network.CreateNode(peer, discovery: dht);
            _owned.Add(dht);
            _owned.Add(node);
            return Task.FromResult(new P2PInferenceClient(node, options with { TimeProvider = _time, Random = TestSeed.CreateRandom() }));
        },
        Input = new StringReader(stdin),
        InputIsTerminal = terminal,
        ReadSecret = (text, _) => prompt?.Invoke(text),
        Time = _time,
        DefaultProfilePath = _profilePath,
        Variable = name => variables?.GetValueOrDefault(name),
    };

    /// <summary>Runs a client command; every command names the fake gateways' cluster unless <paramref name="withCluster"/> is false.</summary>
    private async Task<(int Code, string Output, string Error)> RunAsync(string[] args, ClientCommandEnvironment? environment = null, bool withCluster = true)
    {
        if (withCluster && !args.Contains("--cluster")) args = [.. args, "--cluster", FakeGateway.Cluster.Id.ToString()];
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await ClientCommand.RunAsync(args, output, error, environment ?? Environment());
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>An API key in the environment, as a script or service passes it.</summary>
    private ClientCommandEnvironment WithKey(string key = "k") => Environment(variables: new() { [ClientCommand.ApiKeyVariable] = key });

    private Task<ClientProfile> ProfileAsync() => ClientProfile.LoadAsync(_profilePath, CancellationToken.None);

    private async Task LoginAsync() =>
        Assert.That((await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap])).Code, Is.Zero);

    [Test]
    public async Task Login_ReadsThePasswordFromStdin_AndKeepsTokenAndBootstrapInTheProfile()
    {
        var (code, output, error) = await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap]);

        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("logged in as ann@example.com"));
        var profile = await ProfileAsync();
        Assert.That(profile.Token, Is.EqualTo(FakeGateway.Token));
        Assert.That(profile.TokenExpiresAt, Is.EqualTo(_time.GetUtcNow().AddHours(1)));
        Assert.That(profile.Bootstrap, Is.EqualTo(new[] { Bootstrap }));
        var login = (Workers.Contracts.Auth.LoginRequest)_gateway.CallsOf(WorkerMethods.Gateway.Login).Single().Request;
        Assert.That(login.Password, Is.EqualTo("right"));
    }

    [Test]
    public async Task Login_KeepsTheClusterInTheProfile_SoLaterCommandsNeedNotNameIt()
    {
        await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap]);

        var created = await RunAsync(["keys", "create", "--name", "laptop"], withCluster: false);

        Assert.That(created.Code, Is.Zero, created.Error);
        Assert.That((await ProfileAsync()).Cluster, Is.EqualTo(FakeGateway.Cluster.Id.ToString()));
    }

    [Test]
    public async Task Login_WithTheOperatorsRevocationListNamingTheGatewaysGrant_RefusesToSendThePassword_AndKeepsTheListInTheProfile()
    {
        var list = Path.Combine(_directory, "revoked.txt");
        await File.WriteAllTextAsync(list, "# the operator's list\n0000000000000001\n");

        var (code, _, error) = await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap, "--revocation-list", list]);

        Assert.That(code, Is.Not.Zero);
        Assert.That(error.TrimEnd().Split('\n'), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.Contain("no valid gateway grant").And.Contain("revoked"));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Login), Is.Empty, "the password was never sent");
        Assert.That((await ProfileAsync()).RevocationList, Is.EqualTo(Path.GetFullPath(list)), "later commands reread the same file");
    }

    [Test]
    public async Task ASignedListAGatewayHandsOn_IsKeptInTheProfile_AndStillRefusesTheGatewayItRevokes_WhenTheGatewayWithholdsIt()
    {
        var list = FakeGateway.Cluster.SignRevocations(new RevocationList([FakeGateway.GrantSerial], []), _time.GetUtcNow());
        _gateway.HandOn(list);

        var first = await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap]);
        var kept = (await ProfileAsync()).SignedRevocations;
        // The revoked gateway stops handing on the list that revokes it; a new command does not need it from there.
        _gateway.HandOn(null);
        _time.Advance(TimeSpan.FromMinutes(5));
        var second = await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap]);

        Assert.Multiple(() =>
        {
            Assert.That(first.Code, Is.Not.Zero);
            Assert.That(first.Error, Does.Contain("revoked"), "the gateway's own list revokes it, and it is checked against it before use");
            Assert.That(kept, Is.EqualTo(list.ToText()), "kept although the command failed");
            Assert.That(second.Code, Is.Not.Zero);
            Assert.That(second.Error, Does.Contain("revoked"));
            Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Login), Is.Empty, "the password was never sent");
        });
    }

    [Test]
    public async Task ASignedListOfAnotherCluster_IsNeitherKeptNorHeld()
    {
        var other = new ClusterKey(KeyPair.FromSeed(Enumerable.Repeat((byte)0x5b, 32).ToArray()));
        _gateway.HandOn(other.SignRevocations(new RevocationList([FakeGateway.GrantSerial], []), _time.GetUtcNow()));

        var (code, _, error) = await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap]);

        Assert.That(code, Is.Zero, error);
        Assert.That((await ProfileAsync()).SignedRevocations, Is.Null);
    }

    [Test]
    public async Task Login_WithAMissingRevocationList_FailsInOneLine_WithoutSendingThePassword()
    {
        var (code, _, error) = await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap, "--revocation-list",
            Path.Combine(_directory, "missing.txt")]);

        Assert.That(code, Is.Not.Zero);
        Assert.That(error.TrimEnd().Split('\n'), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.Contain("revocation list").And.Contain("does not exist"));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Login), Is.Empty);
    }

    [Test]
    public async Task Login_WithoutACluster_RefusesToSendThePassword_InOneLine()
    {
        var (code, _, error) = await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap], withCluster: false);

        Assert.That(code, Is.Not.Zero);
        Assert.That(error.TrimEnd().Split('\n'), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.Contain("no cluster id").And.Contain("--cluster"));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Login), Is.Empty, "the password was never sent");
    }

    [Test]
    public async Task Login_OnATerminal_PromptsWithoutEcho()
    {
        var prompts = new List<string>();
        var environment = Environment(stdin: "", terminal: true, prompt: text =>
        {
            prompts.Add(text);
            return "right";
        });

        var (code, _, error) = await RunAsync(["login", "--email", "ann@example.com", "--bootstrap", Bootstrap], environment);

        Assert.That(code, Is.Zero, error);
        Assert.That(prompts, Is.EqualTo(new[] { "Password: " }));
    }

    [Test]
    public async Task Register_OnATerminal_AsksTwice_AndRefusesAMismatch()
    {
        var answers = new Queue<string>(["one", "two"]);
        var environment = Environment(terminal: true, prompt: _ => answers.Dequeue());

        var (code, _, error) = await RunAsync(["register", "--email", "a@b.c", "--bootstrap", Bootstrap], environment);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error.Trim(), Is.EqualTo("error: invalid input: the passwords do not match"));
        Assert.That(_gateway.Calls, Is.Empty);
    }

    [Test]
    public async Task Password_IsNeverACommandLineArgument()
    {
        var (code, _, _) = await RunAsync(["login", "--email", "ann@example.com", "--password", "right", "--bootstrap", Bootstrap]);

        Assert.That(code, Is.Not.Zero);
        Assert.That(_gateway.Calls, Is.Empty);
    }

    [Test]
    public async Task Login_WrongPassword_IsOneLineOnStderr_AndExitOne()
    {
        var (code, output, error) = await RunAsync(["login", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap],
            Environment(stdin: "wrong\n"));

        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Is.Empty);
        Assert.That(error, Is.EqualTo("error: not authenticated: wrong email or password" + System.Environment.NewLine));
    }

    [Test]
    public async Task Errors_WithJson_AreOneJsonLine()
    {
        var (code, _, error) = await RunAsync(["login", "--json", "--email", "ann@example.com", "--password-stdin", "--bootstrap", Bootstrap],
            Environment(stdin: "wrong\n"));

        Assert.That(code, Is.EqualTo(1));
        var document = JsonDocument.Parse(error);
        Assert.That(document.RootElement.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("Unauthenticated"));
    }

    [Test]
    public async Task KeysCreate_PrintsTheKeyOnce_KeepsIt_AndInferUsesIt()
    {
        await LoginAsync();

        var created = await RunAsync(["keys", "create", "--name", "laptop"]);
        var inferred = await RunAsync(["infer", "hello world"]);

        Assert.That(created.Code, Is.Zero, created.Error);
        Assert.That(created.Output, Does.Contain(FakeGateway.ApiKey));
        Assert.That((await ProfileAsync()).ApiKey, Is.EqualTo(FakeGateway.ApiKey));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.CreateApiKey).Single().Authorization, Is.EqualTo("Bearer " + FakeGateway.Token));
        Assert.That(inferred.Code, Is.Zero, inferred.Error);
        Assert.That(inferred.Output.Trim(), Is.EqualTo("HELLO WORLD"));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Infer).Single().Authorization, Is.EqualTo("ApiKey " + FakeGateway.ApiKey));
    }

    [Test]
    public async Task KeysCreate_WithoutName_GetsADatedDefaultName()
    {
        await LoginAsync();

        var created = await RunAsync(["keys", "create", "--json"]);

        Assert.That(created.Code, Is.Zero, created.Error);
        var expected = "key-" + _time.GetUtcNow().ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(JsonDocument.Parse(created.Output).RootElement.GetProperty("name").GetString(), Is.EqualTo(expected));
    }

    [Test]
    public async Task KeysList_WithoutLogin_SaysSo()
    {
        var (code, _, error) = await RunAsync(["keys", "list", "--bootstrap", Bootstrap]);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.StartWith("error: not logged in"));
        Assert.That(_connects, Is.Empty);
    }

    [Test]
    public async Task KeysList_AndRevoke_WithJson()
    {
        await LoginAsync();

        var listed = await RunAsync(["keys", "list", "--json"]);
        var revoked = await RunAsync(["keys", "revoke", "k1", "--json"]);

        Assert.That(listed.Code, Is.Zero, listed.Error);
        var keys = JsonDocument.Parse(listed.Output).RootElement;
        Assert.That(keys[0].GetProperty("keyId").GetString(), Is.EqualTo("k1"));
        Assert.That(keys[0].GetProperty("revoked").GetBoolean(), Is.False);
        Assert.That(JsonDocument.Parse(revoked.Output).RootElement.GetProperty("newlyRevoked").GetBoolean(), Is.True);
    }

    [Test]
    public async Task Logout_RevokesTheProfilesToken_AndRemovesIt_KeepingTheApiKey()
    {
        await LoginAsync();
        Assert.That((await RunAsync(["keys", "create"])).Code, Is.Zero);

        var (code, output, error) = await RunAsync(["logout"]);

        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("logged out"));
        var logout = (Workers.Contracts.Auth.LogoutRequest)_gateway.CallsOf(WorkerMethods.Gateway.Logout).Single().Request;
        Assert.That(logout.Token, Is.EqualTo(FakeGateway.Token));
        var profile = await ProfileAsync();
        Assert.That(profile.Token, Is.Null);
        Assert.That(profile.TokenExpiresAt, Is.Null);
        Assert.That(profile.ApiKey, Is.EqualTo(FakeGateway.ApiKey), "API keys are not login tokens");
        var keys = await RunAsync(["keys", "list"]);
        Assert.That(keys.Code, Is.EqualTo(1));
        Assert.That(keys.Error, Does.Contain("not logged in"));
    }

    [Test]
    public async Task LogoutAll_RevokesEveryToken_WithJson()
    {
        await LoginAsync();

        var (code, output, error) = await RunAsync(["logout", "--all", "--json"]);

        Assert.That(code, Is.Zero, error);
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.RevokeAllTokens), Has.Length.EqualTo(1));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Logout), Is.Empty);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.That(json.GetProperty("all").GetBoolean(), Is.True);
        Assert.That(json.GetProperty("revokedBefore").GetDateTimeOffset(), Is.GreaterThan(_time.GetUtcNow()));
        Assert.That((await ProfileAsync()).Token, Is.Null);
    }

    [Test]
    public async Task Logout_WithATokenTheNetworkNoLongerAccepts_RemovesItAnyway_AndSaysWhy()
    {
        await LoginAsync();
        var profile = await ProfileAsync();
        profile.Token = "revoked-elsewhere";
        await profile.SaveAsync(_profilePath, CancellationToken.None);

        var (code, _, error) = await RunAsync(["logout"]);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.StartWith("error: not authenticated").And.Contain("revoked"));
        Assert.That((await ProfileAsync()).Token, Is.Null);
    }

    [Test]
    public async Task Logout_WithoutLogin_SaysSo()
    {
        var (code, _, error) = await RunAsync(["logout", "--bootstrap", Bootstrap]);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain("not logged in"));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Logout), Is.Empty);
    }

    [Test]
    public async Task Models_PrintsTheNetworksModels()
    {
        var text = await RunAsync(["models", "--bootstrap", Bootstrap]);
        var json = await RunAsync(["models", "--json"]);

        Assert.That(text.Output, Does.Contain("builtin-small"));
        Assert.That(JsonDocument.Parse(json.Output).RootElement[0].GetProperty("processors").GetInt32(), Is.EqualTo(2));
    }

    [Test]
    public async Task Infer_Stream_PrintsTokensAsTheyArrive()
    {
        var (code, output, error) = await RunAsync(["infer", "one two three", "--stream", "--api-key-stdin", "--bootstrap", Bootstrap],
            Environment(stdin: "sk-given\n"));

        Assert.That(code, Is.Zero, error);
        Assert.That(output, Is.EqualTo("one two three" + System.Environment.NewLine));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.InferStream).Single().Authorization, Is.EqualTo("ApiKey sk-given"));
    }

    [Test]
    public async Task Infer_StreamJson_PrintsOneObjectPerChunk()
    {
        var (code, output, _) = await RunAsync(["infer", "a b", "--stream", "--json", "--model", "builtin-tiny", "--bootstrap", Bootstrap], WithKey());

        var lines = output.Split(System.Environment.NewLine, StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.That(code, Is.Zero);
        Assert.That(lines.Select(l => l.GetProperty("text").GetString()), Is.EqualTo(new[] { "a", " b" }));
        Assert.That(lines[^1].GetProperty("finishReason").GetString(), Is.EqualTo("stop"));
        Assert.That(((InferRequest)_gateway.CallsOf(WorkerMethods.Gateway.InferStream).Single().Request).Model, Is.EqualTo("builtin-tiny"));
    }

    [Test]
    public async Task Infer_FailingWithPartialOutput_PrintsWhatCameThenTheError()
    {
        _gateway.Handle<InferRequest, InferResponse>(WorkerMethods.Gateway.Infer, InferRequest.Parser, (_, _) =>
            throw new RpcException(RpcStatusCode.Unavailable, "processor lost", new Dictionary<string, string> { [WorkerMethods.PartialOutputDetail] = "Once upon" }));

        var (code, output, error) = await RunAsync(["infer", "x", "--bootstrap", Bootstrap], WithKey());

        Assert.That(code, Is.EqualTo(1));
        Assert.That(output.Trim(), Is.EqualTo("Once upon"));
        Assert.That(error.Trim(), Is.EqualTo("error: unavailable: processor lost"));
    }

    [Test]
    public async Task Infer_TakesTheKeyFromTheEnvironment_AndStdinBeforeIt()
    {
        var fromVariable = await RunAsync(["infer", "x", "--bootstrap", Bootstrap], WithKey("sk-env"));
        var fromStdin = await RunAsync(["infer", "x", "--api-key-stdin", "--bootstrap", Bootstrap],
            Environment(stdin: "sk-stdin\n", variables: new() { [ClientCommand.ApiKeyVariable] = "sk-env" }));

        Assert.That((fromVariable.Code, fromStdin.Code), Is.EqualTo((0, 0)), fromVariable.Error + fromStdin.Error);
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Infer).Select(c => c.Authorization), Is.EqualTo(new[] { "ApiKey sk-env", "ApiKey sk-stdin" }));
    }

    [Test]
    public async Task Infer_RefusesAKeyOnTheCommandLine_WithoutSendingIt()
    {
        var (code, _, error) = await RunAsync(["infer", "x", "--api-key", "sk-secret", "--bootstrap", Bootstrap]);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain("--api-key-stdin").And.Contain(ClientCommand.ApiKeyVariable).And.Not.Contain("sk-secret"));
        Assert.That(_gateway.CallsOf(WorkerMethods.Gateway.Infer), Is.Empty);
    }

    [Test]
    public async Task Infer_WithoutAKey_SaysHowToGetOne()
    {
        var (code, _, error) = await RunAsync(["infer", "x", "--bootstrap", Bootstrap]);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain("keys create"));
    }

    [Test]
    public async Task Commands_WithoutBootstrap_AndNoneInTheProfile_SaySo()
    {
        var (code, _, error) = await RunAsync(["models"]);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain("--bootstrap is required"));
    }

    [Test]
    public async Task Bootstrap_ThatIsNotAMultiaddr_IsAClearError()
    {
        var (code, _, error) = await RunAsync(["models", "--bootstrap", "not-an-address"]);

        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.StartWith("error: invalid input: 'not-an-address' is not a valid multiaddr"));
    }

    [Test]
    public async Task BusyGateway_ErrorSaysWhenToRetry()
    {
        _gateway.Handle<InferRequest, InferResponse>(WorkerMethods.Gateway.Infer, InferRequest.Parser, (_, _) =>
            throw RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "rate limit", TimeSpan.FromSeconds(2)));

        var (_, _, error) = await RunAsync(["infer", "x", "--bootstrap", Bootstrap], WithKey());

        Assert.That(error.Trim(), Is.EqualTo("error: busy: rate limit (retry in 2 s)"));
    }

    [Test]
    public async Task ClientCommand_IsRegisteredInTheCli()
    {
        var output = new StringWriter();
        var code = await CliApp.RunAsync(["client", "--help"], output, new StringWriter());

        Assert.That(code, Is.Zero);
        Assert.That(output.ToString(), Does.Contain("register").And.Contain("login").And.Contain("keys").And.Contain("models").And.Contain("infer"));
    }
}
