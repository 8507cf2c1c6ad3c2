using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Runs one node: starts its facilities in order (store, network, discovery, RPC), starts the
/// worker and announces its topics, then is <see cref="IsReady"/>. Stopping unannounces, refuses
/// new calls, lets calls in flight finish within <see cref="WorkerRuntimeOptions.DrainTimeout"/>,
/// stops the worker and the facilities in reverse order. A bootstrap node has no worker (and no
/// store): it is a DHT server only.
/// </summary>
public sealed class WorkerRuntime : IAsyncDisposable
{
    private readonly WorkerRuntimeOptions _options;
    private readonly IWorker? _worker;
    private readonly IWorkerFacilities _facilities;
    private readonly ILogger _logger;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Stack<(string Name, Func<CancellationToken, Task> Stop)> _started = new();
    private IReadOnlyList<string> _topics = [];
    private volatile WorkerRuntimeState _state = WorkerRuntimeState.Created;

    /// <param name="worker">The worker to run; null only for <see cref="WorkerRole.Bootstrap"/>.</param>
    /// <param name="facilities">Null: the real ones (<see cref="Libp2pWorkerFacilities"/>) built from <paramref name="options"/>.</param>
    public WorkerRuntime(WorkerRuntimeOptions options, IWorker? worker, IWorkerFacilities? facilities = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (worker is null && options.Role != WorkerRole.Bootstrap)
            throw new ArgumentException($"the {WorkerRoles.NameOf(options.Role)} role needs a worker", nameof(worker));
        if (worker is not null && options.Role == WorkerRole.Bootstrap)
            throw new ArgumentException("a bootstrap node runs no worker", nameof(worker));
        _options = options;
        _worker = worker;
        _facilities = facilities ?? new Libp2pWorkerFacilities(options);
        _logger = options.LoggerFactory.CreateLogger("P2PInference.Worker." + WorkerRoles.NameOf(options.Role));
    }

    public WorkerRole Role => _options.Role;

    public WorkerRuntimeOptions Options => _options;

    public WorkerRuntimeState State => _state;

    public bool IsReady => _state == WorkerRuntimeState.Ready;

    /// <summary>Completes when the runtime is ready; faults when the start failed; cancelled if stopped before it was ready.</summary>
    public Task Ready => _ready.Task;

    /// <summary>Completes once a stop finished.</summary>
    public Task Stopped => _stopped.Task;

    /// <summary>The node's key (loaded from, or created in, the data directory); null before start.</summary>
    public KeyPair? Identity { get; private set; }

    public PeerId PeerId => Identity?.PeerId ?? throw new InvalidOperationException("the runtime has not started");

    /// <summary>The addresses others can dial, each ending in /p2p/&lt;PeerId&gt;; empty before start.</summary>
    public IReadOnlyList<Multiaddress> Addresses { get; private set; } = [];

    /// <summary>The topics the worker announced.</summary>
    public IReadOnlyList<string> Topics => _topics;

    public IWorker? Worker => _worker;

    public IWorkerFacilities Facilities => _facilities;

    /// <summary>What the worker was given; null before start and for a bootstrap node.</summary>
    public WorkerContext? Context { get; private set; }

    public IDiscovery? Discovery { get; private set; }

    public IRpcClient? Client { get; private set; }

    /// <summary>The server the worker registered on (it counts and drains calls); null for a bootstrap node.</summary>
    public DrainingRpcServer? Server { get; private set; }

    /// <exception cref="InvalidOperationException">Started before.</exception>
    /// <remarks>On failure everything started so far is stopped in reverse order and the exception is rethrown.</remarks>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_state != WorkerRuntimeState.Created)
                throw new InvalidOperationException($"the runtime was already started (it is {_state})");
            _state = WorkerRuntimeState.Starting;
            try
            {
                await StartCoreAsync(cancellationToken);
            }
            catch (Exception e)
            {
                _logger.LogError("start failed: {Message}; stopping what was started", e.Message);
                await StopFacilitiesAsync(CancellationToken.None);
                _state = WorkerRuntimeState.Failed;
                _ready.TrySetException(e);
                _stopped.TrySetResult();
                throw;
            }

            _state = WorkerRuntimeState.Ready;
            _ready.TrySetResult();
            _logger.LogInformation("ready: {Role} {PeerId} on {Addresses}", WorkerRoles.NameOf(Role), PeerId, string.Join(" ", Addresses));
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        // Before anything is opened: a worker that could not prove its role must not even join.
        if (_worker is not null && _options.Grant is null && _options.ClusterKey is null)
            throw new WorkerConfigurationException([WorkerTrust.MissingGrantMessage(Role)]);
        if (PrivateDirectory.Ensure(_options.DataDirectory))
            _logger.LogWarning("data directory {Path} was readable by other users; it is now owner-only (0700)", _options.DataDirectory);
        Identity = LoadIdentity();

        IKeyValueStore? store = null;
        if (_worker is not null)
        {
            _logger.LogInformation("opening store in {Directory}", _options.StorePath);
            store = await _facilities.OpenStoreAsync(_options.StorePath, cancellationToken);
            _started.Push(("store", _facilities.CloseStoreAsync));
        }

        _logger.LogInformation("starting network as {PeerId}", Identity.PeerId);
        _started.Push(("network", _facilities.StopNetworkAsync));
        Addresses = await _facilities.StartNetworkAsync(Identity, cancellationToken);

        _logger.LogInformation("starting discovery ({Mode}, {Protocol}, {Count} bootstrap peers)", _options.DhtMode, _options.DhtProtocolId,
            _options.BootstrapPeers.Count);
        _started.Push(("discovery", _facilities.StopDiscoveryAsync));
        Discovery = await _facilities.StartDiscoveryAsync(cancellationToken);

        _logger.LogInformation("starting rpc");
        _started.Push(("rpc", _facilities.StopRpcAsync));
        var (server, client) = await _facilities.StartRpcAsync(Discovery, cancellationToken);
        Client = client;

        if (_worker is null) return;
        var (trustedServer, trustedClient) = StartTrust(Identity, server, client);
        if (trustedClient is TrustedRpcClient checking) _facilities.KeepInboundCapacityFor(checking.HoldsGrantAsync);
        Server = new DrainingRpcServer(trustedServer);
        Context = new WorkerContext
        {
            Identity = Identity,
            Server = Server,
            Client = trustedClient,
            Discovery = Discovery,
            Store = store!,
            Time = _options.TimeProvider,
            Random = new Random(_options.EffectiveSeed),
            RandomSource = _options.RandomSource,
            LoggerFactory = _options.LoggerFactory,
        };
        _logger.LogInformation("starting worker {Role}", _worker.Role);
        _started.Push(("worker", _worker.StopAsync));
        _topics = await _worker.StartAsync(Context, cancellationToken) ?? [];
        foreach (var topic in _topics)
        {
            _logger.LogInformation("announcing {Topic}", topic);
            await Discovery.AnnounceAsync(topic, cancellationToken);
        }
    }

    /// <summary>
    /// Graceful stop: unannounce, refuse new calls, drain calls in flight (up to the drain
    /// deadline, then they are cancelled), stop the worker, then RPC, discovery, network and store.
    /// A second call waits for the first. Cancelling skips the rest of the drain, not the stops.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(CancellationToken.None);
        try
        {
            if (_state is WorkerRuntimeState.Stopped or WorkerRuntimeState.Failed) return;
            if (_state == WorkerRuntimeState.Created)
            {
                _state = WorkerRuntimeState.Stopped;
                _ready.TrySetCanceled(CancellationToken.None);
                _stopped.TrySetResult();
                return;
            }

            _state = WorkerRuntimeState.Stopping;
            _logger.LogInformation("stopping {Role} {PeerId}", WorkerRoles.NameOf(Role), PeerId);
            foreach (var topic in _topics)
            {
                _logger.LogInformation("unannouncing {Topic}", topic);
                try
                {
                    await Discovery!.UnannounceAsync(topic, CancellationToken.None);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    _logger.LogWarning("could not unannounce {Topic}: {Message}", topic, e.Message);
                }
            }

            if (Server is { } server)
            {
                server.BeginDraining();
                await DrainAsync(server, cancellationToken);
            }

            await StopFacilitiesAsync(CancellationToken.None);
            _state = WorkerRuntimeState.Stopped;
            _stopped.TrySetResult();
            _logger.LogInformation("stopped");
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task DrainAsync(DrainingRpcServer server, CancellationToken cancellationToken)
    {
        _logger.LogInformation("refusing new calls; {Count} in flight (drain deadline {Deadline})", server.InFlight, _options.DrainTimeout);
        if (server.Drained.IsCompleted) return;
        try
        {
            await server.Drained.WaitAsync(_options.DrainTimeout, _options.TimeProvider, cancellationToken);
            _logger.LogInformation("calls in flight finished");
        }
        catch (TimeoutException)
        {
            _logger.LogWarning("{Count} calls still in flight after {Deadline}; cancelling them", server.InFlight, _options.DrainTimeout);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning("drain cut short; cancelling {Count} calls in flight", server.InFlight);
        }
    }

    private async Task StopFacilitiesAsync(CancellationToken cancellationToken)
    {
        while (_started.TryPop(out var stage))
        {
            _logger.LogInformation("stopping {Stage}", stage.Name);
            try
            {
                await stage.Stop(cancellationToken);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // One stage failing to stop must not leave the later ones (the store above all) open.
                _logger.LogWarning(e, "stopping {Stage} failed", stage.Name);
            }
        }
    }

    /// <summary>
    /// The worker's grant (pre-issued, or signed now with the cluster key) served to whoever asks;
    /// its calls go only to peers that prove the callee's role; Auth and processors serve gateways only.
    /// </summary>
    /// <exception cref="WorkerConfigurationException">No grant and no cluster key, or a grant that does not fit this node.</exception>
    private (IRpcServer Server, IRpcClient Client) StartTrust(KeyPair identity, IRpcServer server, IRpcClient client)
    {
        var role = WorkerTrust.GrantRoleOf(Role) ?? throw new InvalidOperationException($"{Role} runs no worker");
        var time = _options.TimeProvider;
        var grant = _options.Grant
                    ?? _options.ClusterKey?.Issue(identity.PeerId, role, time.GetUtcNow(), _options.SelfGrantValidity, _options.RandomSource)
                    ?? throw new WorkerConfigurationException([WorkerTrust.MissingGrantMessage(Role)]);
        var verifier = new GrantVerifier(grant.Cluster, time);
        if (_options.RevocationListPath is { } path)
        {
            var updates = new RevocationListUpdates(verifier, path, _logger);
            Own("revocation list", new OperatorFileWatcher(path, "Trust:RevocationList", RevocationList.MaxFileBytes, updates.Take,
                time, _options.GrantCachePeriod, _logger));
        }
        _logger.LogInformation("holding {Grant}", grant);
        if (_options.GrantChecksOffForBenchmark)
        {
            _logger.LogWarning("grant checks are off (benchmark baseline): this node calls and serves peers without checking their grants");
            GrantExchange.Serve(server, grant);
            return (server, client);
        }
        var held = new HeldGrant(grant);
        (IRpcServer Server, IRpcClient Client) secured;
        try
        {
            secured = WorkerTrust.Secure(Role, identity.PeerId, held, verifier, server, client, _options.GrantCachePeriod, _options.LoggerFactory);
        }
        catch (InvalidOperationException e)
        {
            throw new WorkerConfigurationException([$"Trust:Grant: {e.Message}"], e);
        }
        var renewalLogger = _options.LoggerFactory.CreateLogger<GrantRenewal>();
        if (_options.Grant is not null && _options.GrantPath is { } grantPath)
            Own("grant file", GrantRenewal.FromFile(held, grantPath, g => WorkerTrust.Unusable(Role, identity.PeerId, g, verifier), _options.GrantCachePeriod, time,
                renewalLogger));
        else if (_options.Grant is null && _options.ClusterKey is { } key)
            Own("grant renewal", GrantRenewal.SelfSigned(held, key, _options.SelfGrantValidity, _options.RandomSource, time, renewalLogger));
        return secured;
    }

    /// <summary>Disposes <paramref name="owned"/> when the worker stops, in the reverse order of starting.</summary>
    private void Own(string name, IDisposable owned) => _started.Push((name, _ =>
    {
        owned.Dispose();
        return Task.CompletedTask;
    }));

    private KeyPair LoadIdentity()
    {
        var path = _options.IdentityPath;
        var existed = File.Exists(path);
        var key = KeyFile.LoadOrCreate(path, _options.RandomSource);
        _logger.LogInformation(existed ? "loaded identity {PeerId} from {Path}" : "created identity {PeerId} in {Path}", key.PeerId, path);
        return key;
    }

    public async ValueTask DisposeAsync()
    {
        // The gate is not disposed: a SemaphoreSlim holds nothing to free, and a late StopAsync must still work.
        await StopAsync(CancellationToken.None);
    }
}
