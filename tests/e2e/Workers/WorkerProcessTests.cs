using System.Diagnostics;
using System.Text.Json.Nodes;
using P2PInference.Tests.Shared;
using P2PInference.TestKit.Harness;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// The network as a user runs it: real <c>p2pinference run bootstrap|auth|gateway|processor</c>
/// processes on TCP loopback with the sample test configurations, driven by the <c>p2pinference client</c>
/// commands (the password on standard input). Real processes mean real time: the only waits are for
/// their output and their exit.
/// </summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(180_000)]
public sealed class WorkerProcessTests
{
    private string _root = null!;
    private string _clusterKey = null!;
    private string _clusterId = null!;

    [SetUp]
    public async Task SetUp()
    {
        _root = Directory.CreateTempSubdirectory("p2pinference-e2e-").FullName;
        // The operator's first step: a cluster key. Workers sign their own grants with it; clients trust its id.
        _clusterKey = Path.Combine(_root, "cluster.key");
        var init = await CliProcess.RunAsync(CancellationToken.None, "cluster", "init", "--out", _clusterKey, "--json");
        Assert.That(init.ExitCode, Is.Zero, init.Stderr);
        _clusterId = (string)JsonNode.Parse(init.Stdout)!["clusterId"]!;
    }

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Test]
    public async Task ClientCommands_RegisterLoginCreateKeyAndInfer_AgainstRunProcessesOnLoopback(CancellationToken ct)
    {
        await using var bootstrap = StartWorker("bootstrap");
        var bootstrapAddress = (string)(await ReadyAsync(bootstrap, ct))["addrs"]![0]!;
        await using var auth = StartWorker("auth", "--bootstrap", bootstrapAddress);
        await using var gateway = StartWorker("gateway", "--bootstrap", bootstrapAddress);
        await using var processor = StartWorker("processor", "--bootstrap", bootstrapAddress);
        var ready = await Task.WhenAll(ReadyAsync(auth, ct), ReadyAsync(gateway, ct), ReadyAsync(processor, ct));

        var user = new TestDataFactory().User();
        var profile = Path.Combine(_root, "profile.json");
        var registered = await ClientAsync(ct, user.Password, "register", "--email", user.Email, "--password-stdin", "--bootstrap", bootstrapAddress,
            "--cluster", _clusterId, "--profile", profile);
        var login = await ClientAsync(ct, user.Password, "login", "--email", user.Email, "--password-stdin", "--profile", profile);
        var key = await ClientAsync(ct, null, "keys", "create", "--name", "e2e", "--profile", profile, "--json");
        const string Prompt = "The network of peers";
        var streamed = await ClientAsync(ct, null, "infer", Prompt, "--stream", "--temperature", "0", "--seed", "5", "--max-tokens", "16", "--profile", profile);
        var whole = await ClientAsync(ct, null, "infer", Prompt, "--temperature", "0", "--seed", "5", "--max-tokens", "16", "--profile", profile, "--json");

        var text = (string)JsonNode.Parse(whole.Stdout)!["text"]!;
        Assert.Multiple(() =>
        {
            Assert.That(ready.Select(r => (string)r["role"]!), Is.EqualTo(new[] { "auth", "gateway", "processor" }));
            Assert.That((string)ready[1]["topics"]![0]!, Is.EqualTo("p2pinference/gateway"));
            Assert.That(registered.ExitCode, Is.Zero, registered.Stderr);
            Assert.That(registered.Stdout, Does.Contain(user.Email));
            Assert.That(login.ExitCode, Is.Zero, login.Stderr);
            Assert.That(login.Stdout, Does.StartWith("logged in as " + user.Email));
            Assert.That(key.ExitCode, Is.Zero, key.Stderr);
            Assert.That((string?)JsonNode.Parse(key.Stdout)?["apiKey"], Is.Not.Empty);
            Assert.That(streamed.ExitCode, Is.Zero, streamed.Stderr);
            Assert.That(whole.ExitCode, Is.Zero, whole.Stderr);
            Assert.That(text, Is.Not.Empty);
            Assert.That(streamed.Stdout, Is.EqualTo(text + "\n"), "streaming prints the same text as a whole inference, then a newline");
            Assert.That(File.Exists(profile), Is.True);
        });

        // A graceful stop (SIGTERM, as a service manager sends) ends each worker with exit code 0.
        Assert.That(await gateway.TerminateAsync(ct), Is.Zero, await gateway.StandardErrorAsync());
    }

    [Test]
    public async Task ClientInfer_FailsWithOneLine_WhenNoProcessorRuns(CancellationToken ct)
    {
        await using var bootstrap = StartWorker("bootstrap");
        var bootstrapAddress = (string)(await ReadyAsync(bootstrap, ct))["addrs"]![0]!;
        await using var auth = StartWorker("auth", "--bootstrap", bootstrapAddress);
        await using var gateway = StartWorker("gateway", "--bootstrap", bootstrapAddress);
        await Task.WhenAll(ReadyAsync(auth, ct), ReadyAsync(gateway, ct));
        var user = new TestDataFactory().User();
        var profile = Path.Combine(_root, "profile.json");
        await ClientAsync(ct, user.Password, "register", "--email", user.Email, "--password-stdin", "--bootstrap", bootstrapAddress, "--cluster", _clusterId,
            "--profile", profile);
        await ClientAsync(ct, user.Password, "login", "--email", user.Email, "--password-stdin", "--profile", profile);
        await ClientAsync(ct, null, "keys", "create", "--profile", profile);

        var infer = await ClientAsync(ct, null, "infer", "hello", "--profile", profile);

        Assert.Multiple(() =>
        {
            Assert.That(infer.ExitCode, Is.EqualTo(1));
            Assert.That(infer.StderrLines, Has.Length.EqualTo(1));
            Assert.That(infer.StderrLines[0], Does.StartWith("error: unavailable:").And.Contains("builtin-small"));
        });
    }

    [Test]
    public async Task Run_WithoutAGrant_RefusesInOneLineNamingClusterInit(CancellationToken ct)
    {
        var run = await CliProcess.RunAsync(ct, "run", "processor", "--config", RepositoryPaths.Fixture("test-configs", "processor.json"),
            "--data-dir", Path.Combine(_root, "processor"));

        Assert.Multiple(() =>
        {
            Assert.That(run.ExitCode, Is.EqualTo(2));
            Assert.That(run.StderrLines, Has.Length.EqualTo(1), run.Stderr);
            Assert.That(run.StderrLines[0], Does.Contain("p2pinference cluster init"));
        });
    }

    [Test]
    public async Task Run_WithAGrantIssuedByClusterGrant_ServesAsThatRole(CancellationToken ct)
    {
        var keyFile = Path.Combine(_root, "processor", "identity.key");
        var peerId = (await CliProcess.RunAsync(ct, "keygen", "--out", keyFile)).Stdout.Trim();
        var grantFile = Path.Combine(_root, "processor.grant");
        var issued = await CliProcess.RunAsync(ct, "cluster", "grant", "--cluster-key", _clusterKey, "--role", "processor", "--peer", peerId,
            "--valid", "1h", "--out", grantFile, "--json");
        var wrongRole = Path.Combine(_root, "gateway.grant");
        await CliProcess.RunAsync(ct, "cluster", "grant", "--cluster-key", _clusterKey, "--role", "gateway", "--peer", peerId, "--out", wrongRole);

        var refused = await CliProcess.RunAsync(ct, "run", "processor", "--config", RepositoryPaths.Fixture("test-configs", "processor.json"),
            "--data-dir", Path.Combine(_root, "processor"), "--grant", wrongRole);
        await using var bootstrap = StartWorker("bootstrap");
        var bootstrapAddress = (string)(await ReadyAsync(bootstrap, ct))["addrs"]![0]!;
        await using var processor = CliProcess.Start(["run", "processor", "--config", RepositoryPaths.Fixture("test-configs", "processor.json"),
            "--data-dir", Path.Combine(_root, "processor"), "--json", "--grant", grantFile, "--bootstrap", bootstrapAddress]);
        var ready = await ReadyAsync(processor, ct);

        Assert.Multiple(() =>
        {
            Assert.That(issued.ExitCode, Is.Zero, issued.Stderr);
            Assert.That((string)JsonNode.Parse(issued.Stdout)!["clusterId"]!, Is.EqualTo(_clusterId));
            Assert.That((string)JsonNode.Parse(issued.Stdout)!["role"]!, Is.EqualTo("processor"));
            Assert.That(refused.ExitCode, Is.EqualTo(2));
            Assert.That(refused.Stderr, Does.Contain("gateway role"));
            Assert.That((string)ready["peerId"]!, Is.EqualTo(peerId));
        });
    }

    private CliProcess StartWorker(string role, params string[] arguments) =>
        CliProcess.Start(["run", role, "--config", RepositoryPaths.Fixture("test-configs", role + ".json"), "--data-dir", Path.Combine(_root, role), "--json",
            .. role == "bootstrap" ? Array.Empty<string>() : ["--cluster-key", _clusterKey], .. arguments]);

    /// <summary>The worker's ready line (JSON: role, peerId, addrs, topics); fails with its stderr if it exits first.</summary>
    private static async Task<JsonNode> ReadyAsync(CliProcess worker, CancellationToken ct)
    {
        var line = await worker.Output.ReadLineAsync(ct);
        if (line is null) Assert.Fail("the worker exited before it was ready: " + await worker.StandardErrorAsync());
        return JsonNode.Parse(line!)!;
    }

    /// <summary>Runs <c>p2pinference client …</c> to completion, with <paramref name="input"/> (a line) on standard input.</summary>
    private static Task<CliResult> ClientAsync(CancellationToken ct, string? input, params string[] arguments) =>
        CliProcess.RunWithInputAsync(ct, input, ["client", .. arguments]);
}
