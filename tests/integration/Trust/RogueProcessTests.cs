using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.Facilities.Trust;
using P2PInference.Tests.Shared;
using P2PInference.TestKit.Harness;
using P2PInference.Workers.Contracts;

namespace P2PInference.Tests.Integration.Trust;

/// <summary>
/// Only peers the operator granted a role act in it, with real processes: <c>p2pinference run</c>
/// workers on TCP loopback, the <c>p2pinference client</c> commands, and two kinds of rogue claiming
/// the auth, gateway and processor topics — our own binary run with another cluster's key (each role) or
/// as a gateway whose grant the operator revoked (each logs every RPC request that reaches it, at debug),
/// and stock js-libp2p nodes presenting no grant, an expired one, a revoked one, one of another cluster,
/// one for another role or a real worker's (each records every byte it receives on the RPC protocol).
/// Our binary refuses to run with an expired grant or one for another role, so those are shown as
/// refusals. The workers and the clients are given the operator's revocation list.
/// <para>
/// One network serves the whole fixture, built up in the order a user would meet it (the setup): first
/// only rogues (a client's register finds no gateway), then the real gateway (no Auth), then the real
/// Auth (the user signs up; no processor), then the real processor (the user's inferences work). The
/// rogues are asked what reached them at the end. Each test asserts one part of that story.
/// </para>
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class RogueProcessTests
{
    private static readonly string[] Roles = ["auth", "gateway", "processor"];
    // No grant; an expired gateway grant; a revoked processor grant; an auth grant of another cluster; the real Auth's grant.
    private static readonly string[] JsKinds = ["none", "expired", "revoked", "other-cluster", "stolen"];
    private const string Model = "builtin-small";
    // About 20 s on an idle machine; several times that with every core busy. The bound is for a hang, not for load.
    private static readonly TimeSpan SetupBound = TimeSpan.FromSeconds(420);
    private static readonly TimeSpan GracefulStop = TimeSpan.FromSeconds(30);
    private static readonly Regex RpcRequestLine = new(@"rpc request (?<method>\S+) from (?<peer>\S+): (?<bytes>\d+) payload bytes, metadata \[(?<metadata>[^\]]*)\]",
        RegexOptions.CultureInvariant);

    private string _root = null!;
    private string _clusterKey = null!;
    private string _clusterId = null!;
    private string _revocations = null!;
    private string _bootstrapAddress = null!;
    private readonly List<(string Name, CliProcess Process)> _processes = [];
    private readonly ConcurrentDictionary<string, string> _realPeerIds = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RoleGrant> _realGrants = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, CliProcess> _rogueProcesses = new(StringComparer.Ordinal);
    private JsRogues? _js;
    private readonly List<string> _secrets = [];

    // What the story produced, asserted by the tests.
    private CliResult _registerWithOnlyRogueGateways = null!;
    private CliResult _registerWithOnlyRogueAuths = null!;
    private CliResult _inferWithOnlyRogueProcessors = null!;
    private Journey _journey = null!;
    private CliResult _runWithExpiredGrant = null!;
    private CliResult _runWithOtherRoleGrant = null!;
    private IReadOnlyList<JsRogues.ReceivedStream> _jsReceived = null!;
    private readonly ConcurrentDictionary<string, string> _rogueLogs = new(StringComparer.Ordinal);

    private sealed record Journey(CliResult Register, CliResult Login, CliResult Key, CliResult Streamed, CliResult Whole);

    [OneTimeSetUp]
    public async Task StartTheStoryAsync()
    {
        _root = Directory.CreateTempSubdirectory("p2pinference-rogues-").FullName;
        using var bound = new CancellationTokenSource(SetupBound);
        var ct = bound.Token;
        try
        {
            await RunStoryAsync(ct);
        }
        catch
        {
            await TestContext.Progress.WriteLineAsync(await DiagnosticsAsync());
            throw;
        }
    }

    [OneTimeTearDown]
    public async Task StopEverythingAsync()
    {
        if (_js is not null) await _js.DisposeAsync();
        // The bootstrap node last: the others unannounce their topics through it as they stop.
        var ordered = _processes.Where(p => p.Name != "bootstrap").Concat(_processes.Where(p => p.Name == "bootstrap")).ToArray();
        await Task.WhenAll(ordered.Where(p => p.Name != "bootstrap" && !_rogueLogs.ContainsKey(p.Name)).Select(p => StopAsync(p.Process)));
        foreach (var (_, process) in ordered.Where(p => p.Name == "bootstrap")) await StopAsync(process);
        foreach (var (_, process) in _processes) await process.DisposeAsync();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Test]
    public void ClientRegister_WithOnlyRogueGateways_FailsInOneLineNamingTheGatewayRole()
    {
        var register = _registerWithOnlyRogueGateways;
        Assert.Multiple(() =>
        {
            Assert.That(register.ExitCode, Is.EqualTo(1), register.Stderr);
            Assert.That(register.StderrLines, Has.Length.EqualTo(1), register.Stderr);
            Assert.That(register.StderrLines.FirstOrDefault(), Does.StartWith("error: unavailable:").And.Contain("no valid gateway grant"));
        });
    }

    [Test]
    public void ClientRegister_WithOnlyRogueAuths_FailsInOneLineNamingTheAuthRole()
    {
        var register = _registerWithOnlyRogueAuths;
        Assert.Multiple(() =>
        {
            Assert.That(register.ExitCode, Is.EqualTo(1), register.Stderr);
            Assert.That(register.StderrLines, Has.Length.EqualTo(1), register.Stderr);
            Assert.That(register.StderrLines.FirstOrDefault(), Does.StartWith("error: unavailable:").And.Contain("no valid auth grant"));
        });
    }

    [Test]
    public void ClientInfer_WithOnlyRogueProcessors_FailsInOneLineNamingTheProcessors()
    {
        var infer = _inferWithOnlyRogueProcessors;
        Assert.Multiple(() =>
        {
            Assert.That(infer.ExitCode, Is.EqualTo(1), infer.Stderr);
            Assert.That(infer.StderrLines, Has.Length.EqualTo(1), infer.Stderr);
            Assert.That(infer.StderrLines.FirstOrDefault(), Does.StartWith("error: unavailable:").And.Contain("no processor").And.Contain(Model));
        });
    }

    [Test]
    public void ClientJourney_WithRoguesOfEveryKindPresent_WorksThroughTheRealWorkers()
    {
        var (register, login, key, streamed, whole) = _journey;
        Assert.Multiple(() =>
        {
            Assert.That(register.ExitCode, Is.Zero, register.Stderr);
            Assert.That(login.ExitCode, Is.Zero, login.Stderr);
            Assert.That(key.ExitCode, Is.Zero, key.Stderr);
            Assert.That(streamed.ExitCode, Is.Zero, streamed.Stderr);
            Assert.That(whole.ExitCode, Is.Zero, whole.Stderr);
        });
        var answer = JsonNode.Parse(whole.Stdout)!;
        Assert.Multiple(() =>
        {
            Assert.That((string?)answer["text"], Is.Not.Empty);
            Assert.That((string?)answer["processor"], Is.EqualTo(_realPeerIds["processor"]), "served by the real processor");
            Assert.That(streamed.Stdout, Is.EqualTo((string?)answer["text"] + "\n"), "streaming prints the same text");
        });
    }

    [Test]
    public void RogueProcesses_OfAnotherClusterOrWithARevokedGrant_ReceiveOnlyGrantQueries()
    {
        Assert.That(_rogueLogs.Keys, Is.EquivalentTo(_rogueProcesses.Keys), "every rogue process stopped and left its log");
        Assert.Multiple(() =>
        {
            foreach (var (name, log) in _rogueLogs)
            {
                var requests = RpcRequestLine.Matches(log).Select(m => (Method: m.Groups["method"].Value, Bytes: int.Parse(m.Groups["bytes"].Value, CultureInfo.InvariantCulture),
                    Metadata: m.Groups["metadata"].Value)).ToArray();
                Assert.That(requests.Select(r => r.Method), Is.All.EqualTo(GrantExchange.Method), $"{name} received requests:\n{log}");
                Assert.That(requests.Select(r => r.Bytes), Is.All.Zero, $"{name}: a grant query carries nothing");
                Assert.That(requests.Select(r => r.Metadata), Is.All.Empty, $"{name}: a grant query carries no metadata");
                // Not vacuous: every rogue was found and its grant looked at, and it logs what reaches it.
                Assert.That(requests, Is.Not.Empty, $"{name} was never asked for its grant:\n{log}");
                foreach (var secret in _secrets) Assert.That(log, Does.Not.Contain(secret), $"{name} logged a secret of the user's");
            }
        });
    }

    [Test]
    public void JsRogues_OfEveryKind_ReceiveOnlyGrantQueries_NeverAPasswordTokenKeyOrPrompt()
    {
        Assert.That(_secrets, Has.Count.GreaterThanOrEqualTo(11), "passwords, emails, a token, an API key and prompts were sent");
        Assert.Multiple(() =>
        {
            foreach (var stream in _jsReceived)
            {
                Assert.That(stream.Protocol, Is.EqualTo(RpcNode.ProtocolId));
                foreach (var secret in _secrets)
                    Assert.That(stream.Bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(secret)), Is.EqualTo(-1), $"{stream.Rogue} received a secret of the user's");
                var (envelope, trailing) = DecodeRequest(stream.Bytes);
                Assert.That(envelope?.Method, Is.EqualTo(GrantExchange.Method), $"{stream.Rogue} from {stream.From}: {Convert.ToHexString(stream.Bytes)}");
                Assert.That(envelope?.Payload.Length, Is.Zero, $"{stream.Rogue}: a grant query carries nothing");
                Assert.That(envelope?.Metadata, Is.Empty, $"{stream.Rogue}: a grant query carries no metadata");
                Assert.That(trailing, Is.Zero, $"{stream.Rogue}: nothing follows the grant query on its stream");
            }
            // Not vacuous: every rogue was found and asked for its grant.
            Assert.That(_jsReceived.Select(s => s.Rogue).Distinct(), Is.EquivalentTo(_js!.PeerIds.Keys), "rogues never asked for their grant");
        });
    }

    [Test]
    public void Run_WithAnExpiredGrant_RefusesToStart_InOneLine()
    {
        AssertRefusedAtStart(_runWithExpiredGrant, "the grant expired at");
    }

    [Test]
    public void Run_WithAGrantForAnotherRole_RefusesToStart_InOneLine()
    {
        AssertRefusedAtStart(_runWithOtherRoleGrant, "the grant is for the processor role");
    }

    /// <summary>
    /// Exit code 2 and one error line naming the reason (the log lines before it show what started and stopped
    /// again), and no topic ever announced: such a worker never claims its role.
    /// </summary>
    private static void AssertRefusedAtStart(CliResult run, string reason)
    {
        var errors = run.StderrLines.Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(run.ExitCode, Is.EqualTo(2), run.Stderr);
            Assert.That(errors, Has.Length.EqualTo(1), run.Stderr);
            Assert.That(errors.FirstOrDefault(), Does.Contain("cannot use the grant: " + reason));
            Assert.That(run.Stderr, Does.Not.Contain("announcing"), "it never announced its topic");
            Assert.That(run.Stdout, Is.Empty, "it never printed its ready line");
        });
    }

    private async Task RunStoryAsync(CancellationToken ct)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        void Step(string what) => TestContext.Progress.WriteLine($"rogues: {clock.Elapsed.TotalSeconds:F1} s: {what}");
        // The operator: a cluster key, then a key and a grant for each real worker, as the README shows.
        _clusterKey = Path.Combine(_root, "cluster.key");
        var init = Require(await CliProcess.RunAsync(ct, "cluster", "init", "--out", _clusterKey, "--json"));
        _clusterId = (string)JsonNode.Parse(init.Stdout)!["clusterId"]!;
        var bootstrap = StartAsync("bootstrap", "bootstrap", Config("bootstrap", "bootstrap", _ => { }), Path.Combine(_root, "bootstrap"), [], ct);
        await Task.WhenAll(Roles.Select(role => IssueRealGrantAsync(role, ct)));

        // The rogues' keys and grants: another operator's cluster, grants of ours the operator revoked
        // (the real workers read the revocation list), expired ones, ones for another role, real workers' ones.
        var ours = ClusterKey.Load(_clusterKey);
        var other = ClusterKey.Generate(SystemRandomSource.Instance);
        var otherKey = Path.Combine(_root, "other-cluster.key");
        other.Save(otherKey);
        var now = DateTimeOffset.UtcNow;
        var revoked = new List<ulong>();
        var rogueStarts = new List<(string Name, string Role, string[] Trust)>();
        foreach (var role in Roles) rogueStarts.Add(($"rogue-other-cluster-{role}", role, ["--cluster-key", otherKey]));
        // A revoked gateway is the one a client must recognize too (it gets credentials first); revoked Auth and
        // processor grants are shown by the js rogues and on the TestKit. Each process costs a few seconds.
        var revokedGrant = ours.Issue(NewIdentity("rogue-revoked-gateway"), GrantRole.Gateway, now, TimeSpan.FromHours(1), SystemRandomSource.Instance);
        revoked.Add(revokedGrant.Serial);
        rogueStarts.Add(("rogue-revoked-gateway", "gateway", ["--grant", await WriteGrantAsync("rogue-revoked-gateway", revokedGrant, ct)]));
        // Stock js-libp2p rogues, each claiming every role: for the role of its grant it shows its kind, for the
        // other two it is a grant for another role. (Each is a node in the DHT; more of them make every lookup slower.)
        string[] everyTopic = [WorkerTopics.Auth, WorkerTopics.Gateway, WorkerTopics.Processor, WorkerTopics.Model(Model)];
        var jsSpecs = new List<JsRogues.Spec>();
        foreach (var kind in JsKinds)
        {
            var seed = new byte[32];
            SystemRandomSource.Instance.Fill(seed);
            var peer = KeyPair.FromSeed(seed).PeerId;
            var grant = kind switch
            {
                "none" => null,
                "expired" => ours.Issue(peer, GrantRole.Gateway, now - TimeSpan.FromDays(2), now - TimeSpan.FromDays(1), 3),
                "revoked" => ours.Issue(peer, GrantRole.Processor, now, TimeSpan.FromHours(1), SystemRandomSource.Instance),
                "other-cluster" => other.Issue(peer, GrantRole.Auth, now, TimeSpan.FromHours(1), SystemRandomSource.Instance),
                _ => _realGrants["auth"],
            };
            if (kind == "revoked") revoked.Add(grant!.Serial);
            jsSpecs.Add(new JsRogues.Spec("js-" + kind, seed, everyTopic, JsRogues.AnswerFrame(grant?.ToBytes() ?? [])));
        }
        _revocations = Path.Combine(_root, "revoked.txt");
        await File.WriteAllTextAsync(_revocations, new RevocationList(revoked, []).ToText(), ct);

        // `run` checks its own grant at start: these two never serve, so they cannot be rogues.
        var expired = RefusedRunAsync("rogue-expired-auth", "auth", ours.Issue(NewIdentity("rogue-expired-auth"), GrantRole.Auth, now - TimeSpan.FromDays(2),
            now - TimeSpan.FromDays(1), 2), ct);
        var otherRole = RefusedRunAsync("rogue-other-role-gateway", "gateway",
            ours.Issue(NewIdentity("rogue-other-role-gateway"), GrantRole.Processor, now, TimeSpan.FromHours(1), SystemRandomSource.Instance), ct);

        Step("keys and grants issued");
        _bootstrapAddress = (string)(await bootstrap).Ready["addrs"]![0]!;
        var js = JsRogues.StartAsync(_root, _bootstrapAddress, jsSpecs, ct);
        await Task.WhenAll(rogueStarts.Select(async r =>
        {
            var config = Config(r.Role, r.Name, c => Section(c, "Node")["LogLevel"] = "Debug");
            _rogueProcesses[r.Name] = (await StartAsync(r.Name, r.Role, config, Path.Combine(_root, r.Name), ["--bootstrap", _bootstrapAddress, .. r.Trust], ct)).Process;
        }));
        Step("rogue processes ready");
        _js = await js;
        _runWithExpiredGrant = await expired;
        _runWithOtherRoleGrant = await otherRole;

        Step("js rogues ready");
        // 1. Only rogues claim every role.
        _registerWithOnlyRogueGateways = await RegisterAsync(NewUser(), Path.Combine(_root, "profile-1.json"), ct);
        Step("phase 1 done");
        // 2. The real gateway, with only rogue Auths.
        await StartRealAsync("gateway", ct);
        _registerWithOnlyRogueAuths = await RegisterAsync(NewUser(), Path.Combine(_root, "profile-2.json"), ct);
        Step("phase 2 done");
        // 3. The real Auth: the user signs up (rogue gateways and Auths present), with only rogue processors.
        await StartRealAsync("auth", ct);
        var profile = Path.Combine(_root, "profile.json");
        var (register, login, key) = await SignUpAsync(NewUser(), profile, ct);
        Step("phase 3 signed up");
        _inferWithOnlyRogueProcessors = await InferAsync(profile, [], ct);
        Step("phase 3 done");
        // 4. The real processor: the same user's inferences, rogues of every kind still present.
        await StartRealAsync("processor", ct);
        var streamed = await InferAsync(profile, ["--stream"], ct);
        var whole = await InferAsync(profile, ["--json"], ct);
        _journey = new Journey(register, login, key, streamed, whole);

        Step("phase 4 done");
        // What reached the rogues: the js rogues' recordings, the rogue processes' logs once they stopped.
        _jsReceived = await _js.ReceivedAsync(ct);
        await Task.WhenAll(_rogueProcesses.Select(async r =>
        {
            await StopAsync(r.Value);
            _rogueLogs[r.Key] = await r.Value.StandardErrorAsync();
        }));
        Step("rogues stopped");
    }

    private async Task IssueRealGrantAsync(string role, CancellationToken ct)
    {
        var keygen = Require(await CliProcess.RunAsync(ct, "keygen", "--out", Path.Combine(_root, role, "identity.key")));
        var peerId = keygen.Stdout.Trim();
        var file = Path.Combine(_root, role + ".grant");
        Require(await CliProcess.RunAsync(ct, "cluster", "grant", "--cluster-key", _clusterKey, "--role", role, "--peer", peerId, "--valid", "1h", "--out", file));
        _realPeerIds[role] = peerId;
        _realGrants[role] = RoleGrant.FromText((await File.ReadAllTextAsync(file, ct)).Trim());
    }

    private Task StartRealAsync(string role, CancellationToken ct)
    {
        // The test configuration and the operator's revocation list, nothing else: the gateway keeps its default
        // topic cache, which forgets a topic whose every provider was a rogue, so each new real worker counts at once.
        var config = Config(role, role, c => Section(c, "Trust")["RevocationList"] = _revocations);
        return StartAsync(role, role, config, Path.Combine(_root, role), ["--bootstrap", _bootstrapAddress, "--grant", Path.Combine(_root, role + ".grant")], ct);
    }

    private async Task<(CliProcess Process, JsonNode Ready)> StartAsync(string name, string role, string config, string dataDir, string[] arguments,
        CancellationToken ct)
    {
        var process = CliProcess.Start(["run", role, "--config", config, "--data-dir", dataDir, "--json", .. arguments]);
        lock (_processes) _processes.Add((name, process));
        var line = await process.Output.ReadLineAsync(ct);
        if (line is null)
            throw new InvalidOperationException($"{name} exited with {await process.WaitForExitAsync(ct)} before it was ready: {await process.StandardErrorAsync()}");
        return (process, JsonNode.Parse(line)!);
    }

    private async Task<CliResult> RefusedRunAsync(string name, string role, RoleGrant grant, CancellationToken ct) =>
        await CliProcess.RunAsync(ct, "run", role, "--config", Config(role, name, _ => { }), "--data-dir", Path.Combine(_root, name), "--grant",
            await WriteGrantAsync(name, grant, ct));

    /// <summary>A new node key in the data directory of <paramref name="name"/>; its PeerId.</summary>
    private PeerId NewIdentity(string name)
    {
        var key = KeyPair.Generate();
        KeyFile.Save(Path.Combine(_root, name, "identity.key"), key);
        return key.PeerId;
    }

    private async Task<string> WriteGrantAsync(string name, RoleGrant grant, CancellationToken ct)
    {
        var file = Path.Combine(_root, name + ".grant");
        await File.WriteAllTextAsync(file, grant.ToText() + "\n", ct);
        return file;
    }

    private TestUser NewUser()
    {
        var user = new TestDataFactory().User();
        lock (_secrets) _secrets.AddRange([user.Email, user.Password]);
        return user;
    }

    private Task<CliResult> RegisterAsync(TestUser user, string profile, CancellationToken ct) =>
        CliProcess.RunWithInputAsync(ct, user.Password, "client", "register", "--email", user.Email, "--password-stdin", "--bootstrap", _bootstrapAddress,
            "--cluster", _clusterId, "--revocation-list", _revocations, "--profile", profile);

    private async Task<(CliResult Register, CliResult Login, CliResult Key)> SignUpAsync(TestUser user, string profile, CancellationToken ct)
    {
        var register = Require(await RegisterAsync(user, profile, ct));
        var login = Require(await CliProcess.RunWithInputAsync(ct, user.Password, "client", "login", "--email", user.Email, "--password-stdin", "--profile", profile));
        var key = Require(await CliProcess.RunAsync(ct, "client", "keys", "create", "--name", "rogues", "--profile", profile, "--json"));
        var saved = JsonNode.Parse(await File.ReadAllTextAsync(profile, ct))!;
        lock (_secrets) _secrets.AddRange([(string)saved["token"]!, (string)saved["apiKey"]!]);
        return (register, login, key);
    }

    private async Task<CliResult> InferAsync(string profile, string[] mode, CancellationToken ct)
    {
        var prompt = new TestDataFactory().Prompt();
        lock (_secrets) _secrets.Add(prompt);
        return await CliProcess.RunAsync(ct, ["client", "infer", prompt, "--temperature", "0", "--seed", "5", "--max-tokens", "8", "--profile", profile, .. mode]);
    }

    /// <summary>The request envelope at the start of <paramref name="bytes"/> and how many bytes follow it; null when it is not one.</summary>
    private static (RequestEnvelope? Envelope, int Trailing) DecodeRequest(byte[] bytes)
    {
        if (!Varint.TryRead(bytes, out var length, out var prefix) || (ulong)bytes.Length - (ulong)prefix < length) return (null, bytes.Length);
        try
        {
            var envelope = MessagePackRpcCodec<RequestEnvelope>.Instance.Decode(bytes.AsMemory(prefix, (int)length));
            return (envelope, bytes.Length - prefix - (int)length);
        }
        catch (MalformedMessageException)
        {
            return (null, bytes.Length);
        }
    }

    private string Config(string role, string name, Action<JsonObject> edit)
    {
        var config = JsonNode.Parse(File.ReadAllText(RepositoryPaths.Fixture("test-configs", role + ".json")))!.AsObject();
        edit(config);
        var path = Path.Combine(_root, name + ".json");
        File.WriteAllText(path, config.ToJsonString());
        return path;
    }

    private static JsonObject Section(JsonObject config, string name)
    {
        if (config[name] is JsonObject section) return section;
        section = new JsonObject();
        config[name] = section;
        return section;
    }

    private static GrantRole Role(string role) => GrantRoles.TryParse(role, out var parsed) ? parsed : throw new ArgumentOutOfRangeException(nameof(role), role, null);

    private static CliResult Require(CliResult result) =>
        result.ExitCode == 0 ? result : throw new InvalidOperationException($"a command failed with {result.ExitCode}: {result.Stderr}");

    /// <summary>SIGTERM, as a service manager sends; a process still running after <see cref="GracefulStop"/> is left to DisposeAsync (killed).</summary>
    private static async Task StopAsync(CliProcess process)
    {
        using var stopping = new CancellationTokenSource(GracefulStop);
        try
        {
            await process.TerminateAsync(stopping.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException)
        {
            // Already gone, or hung: the caller's dispose kills it.
        }
    }

    private async Task<string> DiagnosticsAsync()
    {
        var text = new StringBuilder();
        if (_js is not null) text.AppendLine("js rogues:").AppendLine(_js.Diagnostics);
        foreach (var (name, process) in _processes.ToArray())
        {
            var stderr = process.StandardErrorAsync();
            if (stderr.IsCompleted) text.AppendLine($"{name}:").AppendLine(await stderr);
        }
        return text.ToString();
    }
}
