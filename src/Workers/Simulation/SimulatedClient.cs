using System.Globalization;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Client;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Workers.Simulation;

/// <summary>
/// One user of a <see cref="NetworkSimulation"/> on a node of its own: registers, logs in, creates an API
/// key, then infers (unary and streamed), cancels, checks that a bad key is refused and that its account
/// still works, with seeded think times. Every request goes through <see cref="RequestAsync"/>, which
/// judges its outcome against the invariants.
/// </summary>
internal sealed class SimulatedClient(NetworkSimulation simulation, int number)
{
    /// <summary>The time a request may take beyond its deadline before it counts as hung.</summary>
    public static readonly TimeSpan HangGrace = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan InferDeadline = TimeSpan.FromSeconds(120);

    private readonly SimulationExecutor _sim = simulation.Executor;
    private readonly Random _random = simulation.Executor.CreateRandom("client", number.ToString(CultureInfo.InvariantCulture));
    private P2PHost? _host;
    private KademliaDht? _dht;
    private RpcNode? _rpc;
    private P2PInferenceClient? _client;
    private int _requests;

    public string Name { get; } = "client-" + number.ToString(CultureInfo.InvariantCulture);

    public string Email => $"user{number}@sim.example";

    public string Password { get; } = "sim-password-" + number.ToString("x8", CultureInfo.InvariantCulture);

    /// <summary>The registration was acknowledged: the user must be able to log in from now on.</summary>
    public bool RegistrationAcknowledged { get; private set; }

    /// <summary>The API key whose creation was acknowledged: it must keep working.</summary>
    public string? AcknowledgedKey { get; private set; }

    private bool _registered;

    public Task StartAsync(IReadOnlyList<Multiaddress> bootstrap, CancellationToken cancellationToken) => SimulationExecutor.InNode(Name, async () =>
    {
        var identity = KeyPair.FromRandom(_sim.CreateRandom("identity", Name));
        _host = new P2PHost(new HostOptions
        {
            Identity = identity,
            Transports = [simulation.Network.CreateTransport(Name)],
            TimeProvider = _sim.Clock,
            // Yamux keeps a clock of its own (System by default): its keep-alive timers must be simulated too.
            Yamux = new YamuxOptions { TimeProvider = _sim.Clock },
            RandomSource = new SeededRandomSource(_sim.CreateRandom("entropy", Name)),
        });
        await _host.StartAsync([InMemoryNetwork.AddressOf(Name)], cancellationToken);
        _dht = new KademliaDht(_host, new KademliaDhtOptions
        {
            Mode = DhtMode.Client,
            BootstrapPeers = bootstrap,
            QueryTimeout = TimeSpan.FromSeconds(2),
            LookupTimeout = TimeSpan.FromSeconds(5),
            TimeProvider = _sim.Clock,
            RandomSeed = _random.Next(),
        });
        await _dht.StartAsync(cancellationToken);
        _rpc = new RpcNode(_host, new RpcOptions { TimeProvider = _sim.Clock, Random = new Random(_random.Next()), RandomSource = _host.RandomSource }, _dht);
        _client = new P2PInferenceClient(_rpc, new ClientOptions
        {
            TimeProvider = _sim.Clock,
            Random = new Random(_random.Next()),
            ClusterId = simulation.Cluster.Id,
            CallTimeout = TimeSpan.FromSeconds(20),
            InferTimeout = TimeSpan.FromSeconds(60),
        });
    });

    /// <summary>The user journey, repeated with seeded think times until <paramref name="until"/> (simulation time).</summary>
    public Task RunJourneyAsync(DateTimeOffset until, CancellationToken cancellationToken) => SimulationExecutor.InNode(Name, async () =>
    {
        var client = _client!;
        while (_sim.Clock.GetUtcNow() < until && !cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(_random.Next(2_000, 12_000)), _sim.Clock, cancellationToken);
            if (_sim.Clock.GetUtcNow() >= until) break;
            if (!_registered)
            {
                await RegisterAsync(client, cancellationToken);
                continue;
            }
            if (client.Token is null)
            {
                await LoginAsync(client, cancellationToken);
                continue;
            }
            if (client.ApiKey is null)
            {
                await RequestAsync("create-key", CallDeadline, async ct =>
                {
                    var key = await client.CreateApiKeyAsync("sim", ct);
                    AcknowledgedKey = key.ApiKey;
                    return "ok";
                }, cancellationToken);
                continue;
            }
            var roll = _random.Next(100);
            if (roll < 40) await InferAsync(client, cancellationToken);
            else if (roll < 70) await StreamAsync(client, cancel: false, cancellationToken);
            else if (roll < 80) await StreamAsync(client, cancel: true, cancellationToken);
            else if (roll < 90) await BadKeyAsync(client, cancellationToken);
            else await LoginAsync(client, cancellationToken);
        }
    });

    /// <summary>
    /// Fires more requests at once than the gateways' buckets hold; no more than <paramref name="allowed"/> may be served.
    /// </summary>
    public Task RateLimitProbeAsync(int requests, int allowed, CancellationToken cancellationToken) => SimulationExecutor.InNode(Name, async () =>
    {
        var client = _client!;
        if (client.ApiKey is null) return;
        var outcomes = await Task.WhenAll(Enumerable.Range(0, requests).Select(_ =>
            RequestAsync("rate-probe", InferDeadline, async ct =>
            {
                await client.InferAsync(Request(maxTokens: 1), ct);
                return "ok";
            }, cancellationToken, expected: RpcStatusCode.ResourceExhausted)));
        var served = outcomes.Count(o => o == "ok");
        simulation.Invariants.RateLimitHolds.Check(served <= allowed,
            () => $"{Name}: {served} of {requests} simultaneous requests were served; the quota allows at most {allowed}");
    });

    /// <summary>After the faults healed: the acknowledged account and key must still work (a few tries, for a network still settling).</summary>
    public Task VerifyAcknowledgedAsync(CancellationToken cancellationToken) => SimulationExecutor.InNode(Name, async () =>
    {
        var client = _client!;
        if (RegistrationAcknowledged)
        {
            var confirmed = await RetryAsync("final-login", async ct =>
            {
                await client.LoginAsync(Email, Password, ct);
                return "ok";
            }, cancellationToken);
            simulation.Invariants.AcknowledgedWritesKept.Check(confirmed, () => $"{Name}: the registered user {Email} could not log in at the end");
        }
        if (AcknowledgedKey is { } key)
        {
            client.ApiKey = key;
            var confirmed = await RetryAsync("final-key", async ct =>
            {
                await client.InferAsync(Request(maxTokens: 1), ct);
                return "ok";
            }, cancellationToken);
            simulation.Invariants.AcknowledgedWritesKept.Check(confirmed, () => $"{Name}: the created API key could not be used at the end");
        }
    });

    public Task StopAsync() => SimulationExecutor.InNode(Name, async () =>
    {
        if (_client is not null) await _client.DisposeAsync();
        if (_rpc is not null) await _rpc.DisposeAsync();
        if (_dht is not null) await _dht.DisposeAsync();
        if (_host is not null) await _host.DisposeAsync();
    });

    private async Task RegisterAsync(P2PInferenceClient client, CancellationToken cancellationToken)
    {
        var outcome = await RequestAsync("register", CallDeadline, async ct =>
        {
            await client.RegisterAsync(Email, Password, ct);
            RegistrationAcknowledged = true;
            return "ok";
        }, cancellationToken, expected: RpcStatusCode.AlreadyExists);
        // A registration whose answer was lost may have been written: the retry finds the user there.
        if (outcome is "ok" or "refused:AlreadyExists") _registered = true;
    }

    private Task LoginAsync(P2PInferenceClient client, CancellationToken cancellationToken) =>
        RequestAsync("login", CallDeadline, async ct =>
        {
            try
            {
                await client.LoginAsync(Email, Password, ct);
                return "ok";
            }
            catch (RpcException e) when (e.Code is RpcStatusCode.Unauthenticated or RpcStatusCode.NotFound)
            {
                simulation.Invariants.AcknowledgedWritesKept.Check(!RegistrationAcknowledged,
                    () => $"{Name}: login of the registered user {Email} was refused ({e.Code}: {e.Message})");
                throw;
            }
        }, cancellationToken);

    private Task InferAsync(P2PInferenceClient client, CancellationToken cancellationToken) =>
        RequestAsync("infer", InferDeadline, async ct =>
        {
            var request = Request(_random.Next(4, 17));
            try
            {
                var response = await client.InferAsync(request, ct);
                simulation.Invariants.ServedOnce.Check(response.RequestId == request.RequestId,
                    () => $"{Name}: request {request.RequestId} was answered with request {response.RequestId}'s response");
                return "ok";
            }
            catch (RpcException e) when (e.Code == RpcStatusCode.Unauthenticated)
            {
                KeyRefused(e);
                throw;
            }
        }, cancellationToken);

    private Task StreamAsync(P2PInferenceClient client, bool cancel, CancellationToken cancellationToken) =>
        RequestAsync(cancel ? "stream-cancel" : "stream", InferDeadline, async ct =>
        {
            var request = Request(_random.Next(8, 33));
            var finishes = 0;
            var lastIndex = -1;
            var cancelSent = false;
            try
            {
                await foreach (var chunk in client.InferStreamAsync(request, ct))
                {
                    simulation.Invariants.ServedOnce.Check(chunk.Index > lastIndex && chunk.RequestId == request.RequestId,
                        () => $"{Name}: stream {request.RequestId} delivered chunk {chunk.Index} of {chunk.RequestId} after chunk {lastIndex}");
                    lastIndex = chunk.Index;
                    if (chunk.FinishReason.Length > 0) finishes++;
                    if (cancel && !cancelSent && chunk.Text.Length > 0)
                    {
                        cancelSent = true;
                        await RequestAsync("cancel", CallDeadline, async cancelToken =>
                        {
                            await client.CancelAsync(request.RequestId, cancelToken);
                            return "ok";
                        }, ct);
                    }
                }
            }
            catch (RpcException e) when (e.Code == RpcStatusCode.Unauthenticated)
            {
                KeyRefused(e);
                throw;
            }
            catch (RpcException e) when (cancelSent && e.Code == RpcStatusCode.Cancelled)
            {
                return "cancelled";
            }
            simulation.Invariants.ServedOnce.Check(finishes <= 1, () => $"{Name}: stream {request.RequestId} finished {finishes} times");
            return "ok";
        }, cancellationToken);

    private Task BadKeyAsync(P2PInferenceClient client, CancellationToken cancellationToken) =>
        RequestAsync("bad-key", InferDeadline, async ct =>
        {
            var good = client.ApiKey;
            client.ApiKey = "p2pi_" + string.Concat(Enumerable.Range(0, 32).Select(_ => (char)('a' + _random.Next(26))));
            try
            {
                await client.InferAsync(Request(maxTokens: 1), ct);
                simulation.Invariants.AuthHolds.Check(false, () => $"{Name}: a request with a made-up API key was served");
                return "ok";
            }
            catch (RpcException e) when (e.Code == RpcStatusCode.Unauthenticated)
            {
                simulation.Invariants.AuthHolds.Check(true, () => "");
                throw;
            }
            finally
            {
                client.ApiKey = good;
            }
        }, cancellationToken, expected: RpcStatusCode.Unauthenticated);

    private void KeyRefused(RpcException e) =>
        simulation.Invariants.AcknowledgedWritesKept.Check(false, () => $"{Name}: its acknowledged API key was refused ({e.Message})");

    private InferRequest Request(int maxTokens) => new()
    {
        RequestId = $"{Name}-{++_requests}",
        Model = BuiltinEngineOptions.DefaultModelName,
        // The tag lets the engine count how often this very request was generated.
        Prompt = $"The network {ServedRequestEngine.TagPrefix}{Name}x{_requests}",
        MaxTokens = maxTokens,
        Temperature = 0.8,
        Seed = _random.Next(),
    };

    private async Task<bool> RetryAsync(string kind, Func<CancellationToken, Task<string>> operation, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 5; attempt++)
        {
            if (await RequestAsync(kind, CallDeadline, operation, cancellationToken) == "ok") return true;
            await Task.Delay(TimeSpan.FromSeconds(5), _sim.Clock, cancellationToken);
        }
        return false;
    }

    /// <summary>
    /// Runs one request with a deadline and records its outcome: <c>ok</c>, <c>refused:Code</c> (the refusal
    /// the request expects), <c>failed:Code</c> (another RPC status), <c>deadline</c>, <c>hung</c> (still running
    /// <see cref="HangGrace"/> after its deadline) or <c>untyped</c> (any other exception).
    /// </summary>
    private async Task<string> RequestAsync(string kind, TimeSpan deadline, Func<CancellationToken, Task<string>> operation,
        CancellationToken cancellationToken, RpcStatusCode? expected = null)
    {
        using var timeout = new CancellationTokenSource(deadline, _sim.Clock);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken);
        using var watchdog = new CancellationTokenSource();
        var running = operation(linked.Token);
        var hang = Task.Delay(deadline + HangGrace, _sim.Clock, watchdog.Token);
        string outcome;
        if (await Task.WhenAny(running, hang) != running)
        {
            outcome = "hung";
            simulation.Invariants.NoHang.Check(false, () => $"{Name}: {kind} was still running {HangGrace.TotalSeconds:0} s after its {deadline.TotalSeconds:0} s deadline");
            simulation.Abandoned(running);
        }
        else
        {
            watchdog.Cancel();
            simulation.Invariants.NoHang.Check(true, () => "");
            try
            {
                outcome = await running;
            }
            catch (RpcException e)
            {
                outcome = (e.Code == expected ? "refused:" : "failed:") + e.Code;
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested || cancellationToken.IsCancellationRequested)
            {
                outcome = "deadline";
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                outcome = "untyped";
                simulation.Invariants.TypedOutcomes.Check(false, () => $"{Name}: {kind} failed with {e.GetType().Name}: {e.Message}");
            }
            if (outcome != "untyped") simulation.Invariants.TypedOutcomes.Check(true, () => "");
        }
        simulation.Count(kind, outcome);
        return outcome;
    }
}
