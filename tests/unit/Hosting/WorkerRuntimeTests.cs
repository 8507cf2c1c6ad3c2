using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Simulation;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary>The runtime's lifecycle over the TestKit twins: order of start and stop, readiness, draining.</summary>
[CancelAfter(10_000)]
public sealed class WorkerRuntimeTests
{
    private static readonly TimeSpan Drain = TimeSpan.FromSeconds(5);

    private readonly List<IAsyncDisposable> _owned = [];
    private FakeTimeProvider _time = null!;
    private InMemoryRpcNetwork _rpc = null!;
    private MockDhtRegistry _registry = null!;
    private TwinFacilities _facilities = null!;
    private string _dataDir = null!;

    [SetUp]
    public void SetUp() => UseClock(new FakeTimeProvider());

    /// <summary>Makes the twins anew on <paramref name="time"/> (a simulation's clock, for a test that waits on timers).</summary>
    private void UseClock(FakeTimeProvider time)
    {
        _time = time;
        _rpc = new InMemoryRpcNetwork(_time);
        _registry = new MockDhtRegistry(_time);
        _facilities = new TwinFacilities(_rpc, _registry);
        _dataDir = Path.Combine(Path.GetTempPath(), "p2pinference-runtime-" + Guid.NewGuid().ToString("N"));
    }

    [TearDown]
    public async Task TearDown()
    {
        foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
        _owned.Clear();
        if (Directory.Exists(_dataDir)) Directory.Delete(_dataDir, recursive: true);
    }

    [Test]
    public async Task StartAsync_StartsStoreNetworkDiscoveryRpc_ThenWorker_ThenAnnounces(CancellationToken ct)
    {
        var (runtime, _) = Create();

        await runtime.StartAsync(ct);

        Assert.That(_facilities.Events, Is.EqualTo(new[]
        {
            "store:open", "network:start", "discovery:start", "rpc:start", "worker:start", "announce:" + TestWorker.Topic,
        }));
        Assert.That(_registry.Providers(TestWorker.Topic).Select(p => p.PeerId), Is.EqualTo(new[] { runtime.PeerId }));
    }

    [Test]
    public async Task StopAsync_UnannouncesFirst_ThenStopsWorkerAndFacilitiesInReverseOrder(CancellationToken ct)
    {
        var (runtime, _) = Create();
        await runtime.StartAsync(ct);
        var started = _facilities.Events.Count;

        await runtime.StopAsync(ct);

        Assert.That(_facilities.Events.Skip(started), Is.EqualTo(new[]
        {
            "unannounce:" + TestWorker.Topic, "worker:stop", "rpc:stop", "discovery:stop", "network:stop", "store:close",
        }));
        Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Stopped));
        Assert.That(runtime.Stopped.IsCompleted, Is.True);
        Assert.That(_registry.Providers(TestWorker.Topic), Is.Empty);
    }

    [Test]
    public async Task Ready_CompletesOnlyOnceTheWorkerStartedAndTopicsAreAnnounced(CancellationToken ct)
    {
        var gate = new TaskCompletionSource();
        var (runtime, _) = Create(startGate: gate.Task);

        var starting = runtime.StartAsync(ct);
        Assert.That(runtime.IsReady, Is.False);
        Assert.That(runtime.Ready.IsCompleted, Is.False);
        Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Starting));

        gate.SetResult();
        await starting;
        await runtime.Ready.WaitAsync(ct);

        Assert.That(runtime.IsReady, Is.True);
        Assert.That(runtime.Topics, Is.EqualTo(new[] { TestWorker.Topic }));
        Assert.That(_registry.Providers(TestWorker.Topic), Has.Count.EqualTo(1));
    }

    [Test]
    public async Task StopAsync_LetsACallInFlightFinish_AndRefusesNewCallsMeanwhile(CancellationToken ct)
    {
        var (runtime, worker) = Create();
        var rpcMayStop = new TaskCompletionSource();
        _facilities.RpcStopGate = rpcMayStop.Task;
        await runtime.StartAsync(ct);
        var client = Client();
        var slow = client.RequestAsync(runtime.PeerId, TestWorker.Slow, "x"u8.ToArray(), null, ct);
        await worker.SlowEntered.WaitAsync(ct);

        var stopping = runtime.StopAsync(ct);
        Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Stopping));
        Assert.That(_facilities.Events, Does.Contain("unannounce:" + TestWorker.Topic), "unannounced before the drain");
        Assert.That(_registry.Providers(TestWorker.Topic), Is.Empty);
        Assert.That(_facilities.Events, Does.Not.Contain("worker:stop"));

        var refused = Assert.ThrowsAsync<RpcException>(() => client.RequestAsync(runtime.PeerId, TestWorker.Echo, "y"u8.ToArray(), null, ct));
        Assert.That(refused!.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(refused.Message, Does.Contain("worker is stopping"));
        Assert.That(stopping.IsCompleted, Is.False);

        worker.Release.SetResult();
        Assert.That(System.Text.Encoding.UTF8.GetString(await slow), Is.EqualTo("done"));
        rpcMayStop.SetResult();
        await stopping;
        Assert.That(_facilities.Events.SkipWhile(e => !e.StartsWith("unannounce:", StringComparison.Ordinal)),
            Is.EqualTo(new[] { "unannounce:" + TestWorker.Topic, "worker:stop", "rpc:stop", "discovery:stop", "network:stop", "store:close" }));
        Assert.That(worker.SlowCallWasCancelled, Is.False);
        Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Stopped));
    }

    /// <summary>
    /// A simulation: the drain deadline is a timer, and the call's cancellation and the stop run in
    /// order once it fires. (Loading the identity from the data directory is synchronous file I/O,
    /// which does not leave the simulation thread.)
    /// </summary>
    [Test]
    public void StopAsync_CancelsACallStillRunningAtTheDrainDeadline() => SimulationTest.Run(async sim =>
    {
        UseClock(sim.Clock);
        var ct = CancellationToken.None;
        try
        {
            var (runtime, worker) = Create();
            await runtime.StartAsync(ct);
            var client = Client();
            var slow = client.RequestAsync(runtime.PeerId, TestWorker.Slow, "x"u8.ToArray(), null, ct);
            await worker.SlowEntered.WaitOrCancelAsync(ct);

            var stopping = runtime.StopAsync(ct);
            await sim.Clock.AdvanceAsync(Drain - TimeSpan.FromMilliseconds(1));
            Assert.That(stopping.IsCompleted, Is.False, "still draining before the deadline");
            Assert.That(_facilities.Events, Does.Not.Contain("rpc:stop"));

            await sim.Clock.AdvanceAsync(TimeSpan.FromMilliseconds(1));
            await stopping;

            await Assert.ThatAsync(() => slow, Throws.TypeOf<RpcException>().With.Property(nameof(RpcException.Code)).EqualTo(RpcStatusCode.Unavailable));
            Assert.That(worker.SlowCallWasCancelled, Is.True);
        }
        finally
        {
            foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
            _owned.Clear();
        }
    });

    [Test]
    public async Task StopAsync_DoesNotWait_WhenNoCallIsInFlight(CancellationToken ct)
    {
        var (runtime, _) = Create();
        await runtime.StartAsync(ct);

        await runtime.StopAsync(ct); // fake time never moves: a wait for the deadline would hang

        Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Stopped));
    }

    [Test]
    public async Task StartAsync_StopsWhatStartedInReverse_AndFaultsReady_WhenTheWorkerFails(CancellationToken ct)
    {
        var (runtime, _) = Create(startFailure: new InvalidOperationException("worker broke"));

        var error = Assert.ThrowsAsync<InvalidOperationException>(() => runtime.StartAsync(ct));

        Assert.That(error!.Message, Is.EqualTo("worker broke"));
        Assert.That(_facilities.Events, Is.EqualTo(new[]
        {
            "store:open", "network:start", "discovery:start", "rpc:start", "worker:start",
            "worker:stop", "rpc:stop", "discovery:stop", "network:stop", "store:close",
        }));
        Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Failed));
        Assert.That(runtime.Ready.IsFaulted, Is.True);
        Assert.That(_registry.Providers(TestWorker.Topic), Is.Empty);
    }

    [Test]
    public async Task StartAsync_StopsOnlyTheStartedFacilities_WhenDiscoveryFails(CancellationToken ct)
    {
        _facilities.FailAt = "discovery";
        var (runtime, _) = Create();

        Assert.ThrowsAsync<InvalidOperationException>(() => runtime.StartAsync(ct));

        Assert.That(_facilities.Events, Is.EqualTo(new[]
        {
            "store:open", "network:start", "discovery:start", "discovery:stop", "network:stop", "store:close",
        }));
        await runtime.StopAsync(ct);
        Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Failed));
    }

    [Test]
    public async Task Bootstrap_RunsDiscoveryAndRpcOnly_WithoutStoreOrWorker(CancellationToken ct)
    {
        var runtime = Own(new WorkerRuntime(Options(WorkerRole.Bootstrap), null, _facilities));

        await runtime.StartAsync(ct);
        await runtime.StopAsync(ct);

        Assert.That(_facilities.Events, Is.EqualTo(new[]
        {
            "network:start", "discovery:start", "rpc:start", "rpc:stop", "discovery:stop", "network:stop",
        }));
        Assert.That(runtime.Context, Is.Null);
    }

    [Test]
    public async Task Identity_IsKeptInTheDataDirectory_SoThePeerIdSurvivesARestart(CancellationToken ct)
    {
        var first = Own(new WorkerRuntime(Options(WorkerRole.Bootstrap), null, _facilities));
        await first.StartAsync(ct);
        var peerId = first.PeerId;
        await first.StopAsync(ct);

        var second = Own(new WorkerRuntime(Options(WorkerRole.Bootstrap), null, new TwinFacilities(_rpc, _registry)));
        await second.StartAsync(ct);

        Assert.That(second.PeerId, Is.EqualTo(peerId));
        Assert.That(File.Exists(Path.Combine(_dataDir, WorkerRuntimeOptions.IdentityFileName)), Is.True);
    }

    [Test]
    [Platform(Exclude = "Win")]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task DataDirectory_IsOwnerOnly_WhenCreated_AndTightenedWhenOthersCouldRead(CancellationToken ct)
    {
        var first = Own(new WorkerRuntime(Options(WorkerRole.Bootstrap), null, _facilities));
        await first.StartAsync(ct);
        var created = File.GetUnixFileMode(_dataDir);
        await first.StopAsync(ct);
        File.SetUnixFileMode(_dataDir, created | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);

        var second = Own(new WorkerRuntime(Options(WorkerRole.Bootstrap), null, new TwinFacilities(_rpc, _registry)));
        await second.StartAsync(ct);

        Assert.That(created, Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute));
        Assert.That(File.GetUnixFileMode(_dataDir), Is.EqualTo(created), "a directory others could read is tightened at start");
    }

    [Test]
    public async Task StartAsync_Throws_WhenStartedTwice(CancellationToken ct)
    {
        var (runtime, _) = Create();
        await runtime.StartAsync(ct);

        Assert.ThrowsAsync<InvalidOperationException>(() => runtime.StartAsync(ct));
    }

    [Test]
    public async Task StopAsync_BeforeStart_CancelsReady()
    {
        var (runtime, _) = Create();

        await runtime.StopAsync(CancellationToken.None);

        Assert.That(runtime.Ready.IsCanceled, Is.True);
        Assert.That(_facilities.Events, Is.Empty);
    }

    [Test]
    public void Constructor_RequiresAWorker_ForWorkerRoles_AndNoneForBootstrap()
    {
        Assert.Throws<ArgumentException>(() => _ = new WorkerRuntime(Options(WorkerRole.Auth), null, _facilities));
        Assert.Throws<ArgumentException>(() => _ = new WorkerRuntime(Options(WorkerRole.Bootstrap), new TestWorker(_ => { }), _facilities));
    }

    [Test]
    public void StartAsync_WithoutAGrantOrClusterKey_RefusesBeforeOpeningAnything_NamingClusterInit()
    {
        var unsecured = Own(new WorkerRuntime(new WorkerRuntimeOptions { Role = WorkerRole.Processor, DataDirectory = _dataDir, TimeProvider = _time },
            new TestWorker(_facilities.Record), _facilities));

        var e = Assert.ThrowsAsync<WorkerConfigurationException>(() => unsecured.StartAsync(CancellationToken.None));

        Assert.That(e!.Errors, Has.Count.EqualTo(1));
        Assert.That(e.Errors[0], Does.Contain("cluster init").And.Contain("--cluster-key"));
        Assert.That(_facilities.Events, Is.Empty, "nothing was opened");
    }

    [Test]
    public void StartAsync_WithAGrantForAnotherPeer_Refuses()
    {
        var other = KeyPair.FromSeed(Enumerable.Repeat((byte)0x35, 32).ToArray()).PeerId;
        var now = _time.GetUtcNow();
        var options = new WorkerRuntimeOptions
        {
            Role = WorkerRole.Processor, DataDirectory = _dataDir, TimeProvider = _time, RandomSeed = 1,
            Grant = Cluster.Issue(other, GrantRole.Processor, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 5),
        };
        var runtime = Own(new WorkerRuntime(options, new TestWorker(_facilities.Record), _facilities));

        var e = Assert.ThrowsAsync<WorkerConfigurationException>(() => runtime.StartAsync(CancellationToken.None));

        Assert.That(e!.Message, Does.Contain("another peer"));
    }

    [Test]
    public async Task Processor_PresentsItsGrant_AndServesOnlyCallersHoldingAGatewayGrant(CancellationToken ct)
    {
        var runtime = Own(new WorkerRuntime(Options(WorkerRole.Processor), new TestWorker(_facilities.Record), _facilities));
        await runtime.StartAsync(ct);
        var caller = Client();
        var now = _time.GetUtcNow();
        var gatewayGrant = Cluster.Issue(caller.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 6);
        var processorGrant = Cluster.Issue(caller.PeerId, GrantRole.Processor, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 7);
        RpcCallOptions With(RoleGrant grant) => new() { Metadata = new Dictionary<string, string> { [GrantExchange.MetadataKey] = grant.ToText() } };

        var presented = RoleGrant.Decode(await caller.RequestAsync(runtime.PeerId, GrantExchange.Method, ReadOnlyMemory<byte>.Empty, null, ct));
        var bare = Assert.ThrowsAsync<RpcException>(() => caller.RequestAsync(runtime.PeerId, TestWorker.Echo, "x"u8.ToArray(), null, ct));
        var wrongRole = Assert.ThrowsAsync<RpcException>(() => caller.RequestAsync(runtime.PeerId, TestWorker.Echo, "x"u8.ToArray(), With(processorGrant), ct));
        var granted = await caller.RequestAsync(runtime.PeerId, TestWorker.Echo, "x"u8.ToArray(), With(gatewayGrant), ct);

        Assert.Multiple(() =>
        {
            Assert.That(presented.Peer, Is.EqualTo(runtime.PeerId));
            Assert.That(presented.Role, Is.EqualTo(GrantRole.Processor));
            Assert.That(presented.Cluster, Is.EqualTo(Cluster.Id));
            Assert.That(bare!.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
            Assert.That(wrongRole!.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
            Assert.That(granted, Is.EqualTo("x"u8.ToArray()));
        });
    }

    [Test]
    public async Task Worker_KeepsItsReservedInboundSlotsForPeersHoldingAGrantOfItsCluster(CancellationToken ct)
    {
        var runtime = Own(new WorkerRuntime(Options(WorkerRole.Processor), new TestWorker(_facilities.Record), _facilities));
        await runtime.StartAsync(ct);
        var check = _facilities.TrustedPeerCheck;
        var now = _time.GetUtcNow();
        var otherCluster = new ClusterKey(KeyPair.FromSeed(Enumerable.Repeat((byte)0x44, 32).ToArray()));
        var gateway = Client();
        GrantExchange.Serve(gateway, Cluster.Issue(gateway.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 8));
        var stranger = Client();
        GrantExchange.Serve(stranger, otherCluster.Issue(stranger.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 9));
        var plain = Client();

        Assert.That(check, Is.Not.Null, "a worker holding a grant keeps slots for its cluster's peers");
        var (granted, otherGrant, none) = (await check!(gateway.PeerId, ct), await check(stranger.PeerId, ct), await check(plain.PeerId, ct));

        Assert.Multiple(() =>
        {
            Assert.That(granted, Is.True);
            Assert.That(otherGrant, Is.False, "a grant of another cluster");
            Assert.That(none, Is.False, "no grant (a client, or any peer at all)");
        });
    }

    [Test]
    public async Task SelfSignedGrant_IsRenewedBeforeItExpires_SoTheWorkerOutlivesItsFirstGrant(CancellationToken ct)
    {
        // 90 days: longer than one timer may wait, so the renewal also shows the wait taken in steps.
        var runtime = Own(new WorkerRuntime(Options(WorkerRole.Processor, selfGrantValidity: TimeSpan.FromDays(90)),
            new TestWorker(_facilities.Record), _facilities));
        await runtime.StartAsync(ct);
        var first = await PresentedGrantAsync(runtime, ct);

        _time.Advance(TimeSpan.FromDays(59));
        var beforeDue = await PresentedGrantAsync(runtime, ct);
        _time.Advance(TimeSpan.FromDays(2));
        var renewed = await PresentedGrantAsync(runtime, ct);
        _time.Advance(TimeSpan.FromDays(40));
        var verifier = new GrantVerifier(Cluster.Id, _time);

        Assert.Multiple(() =>
        {
            Assert.That(beforeDue.Serial, Is.EqualTo(first.Serial), "renewed at two thirds of its validity, not before");
            Assert.That(renewed.Serial, Is.Not.EqualTo(first.Serial));
            Assert.That(renewed.Expiry, Is.GreaterThan(first.Expiry + TimeSpan.FromDays(59)));
            Assert.That(verifier.Check(first, runtime.PeerId, GrantRole.Processor), Does.Contain("expired"));
            Assert.That(verifier.Check(renewed, runtime.PeerId, GrantRole.Processor), Is.Null, "peers still find a valid grant after the first expired");
        });
    }

    [Test]
    public async Task PreIssuedGrant_IsReplaced_WhenTheOperatorWritesANewOne_ButNotByOneThisNodeCannotUse(CancellationToken ct)
    {
        Directory.CreateDirectory(_dataDir);
        var self = KeyFile.LoadOrCreate(Path.Combine(_dataDir, WorkerRuntimeOptions.IdentityFileName)).PeerId;
        var other = KeyPair.FromSeed(Enumerable.Repeat((byte)0x36, 32).ToArray()).PeerId;
        var now = _time.GetUtcNow();
        var file = Path.Combine(_dataDir, "processor.grant");
        var written = DateTime.UtcNow;
        void Write(RoleGrant grant)
        {
            File.WriteAllText(file, grant.ToText() + "\n");
            // An operator writes the file minutes apart; the test must not depend on the file system's timestamp granularity.
            written += TimeSpan.FromMinutes(1);
            File.SetLastWriteTimeUtc(file, written);
        }
        var initial = Cluster.Issue(self, GrantRole.Processor, now, now + TimeSpan.FromDays(10), 10);
        Write(initial);
        var runtime = Own(new WorkerRuntime(Options(WorkerRole.Processor, grant: initial, grantPath: file),
            new TestWorker(_facilities.Record), _facilities));
        await runtime.StartAsync(ct);

        var next = Cluster.Issue(self, GrantRole.Processor, now, now + TimeSpan.FromDays(40), 11);
        Write(next);
        _time.Advance(TimeSpan.FromSeconds(30));
        var afterNew = await PresentedGrantAsync(runtime, ct);
        Write(Cluster.Issue(other, GrantRole.Processor, now, now + TimeSpan.FromDays(40), 12));
        _time.Advance(TimeSpan.FromSeconds(30));
        var afterOtherPeers = await PresentedGrantAsync(runtime, ct);
        Write(Cluster.Issue(self, GrantRole.Auth, now, now + TimeSpan.FromDays(40), 13));
        _time.Advance(TimeSpan.FromSeconds(30));
        var afterOtherRole = await PresentedGrantAsync(runtime, ct);
        File.WriteAllText(file, "not a grant");
        _time.Advance(TimeSpan.FromSeconds(30));
        var afterGarbage = await PresentedGrantAsync(runtime, ct);

        Assert.Multiple(() =>
        {
            Assert.That(afterNew.Serial, Is.EqualTo(11UL), "the operator's new grant is taken up within one period");
            Assert.That(afterOtherPeers.Serial, Is.EqualTo(11UL), "a grant for another peer is refused");
            Assert.That(afterOtherRole.Serial, Is.EqualTo(11UL), "a grant for another role is refused");
            Assert.That(afterGarbage.Serial, Is.EqualTo(11UL), "a malformed file keeps the held grant");
            Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Ready));
        });
    }

    [Test]
    public async Task RevocationList_CaughtTruncatedWhileRewrittenInPlace_KeepsItsRevocations_AndALiftIsTakenWhenTwoReadsAgree(CancellationToken ct)
    {
        Directory.CreateDirectory(_dataDir);
        var caller = Client();
        var now = _time.GetUtcNow();
        var revoked = Cluster.Issue(caller.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 6);
        var other = Cluster.Issue(caller.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 7);
        var file = Path.Combine(_dataDir, "revoked.txt");
        var written = DateTime.UtcNow;
        void Write(string text)
        {
            File.WriteAllText(file, text);
            // An operator writes the file minutes apart; the test must not depend on the file system's timestamp granularity.
            written += TimeSpan.FromMinutes(1);
            File.SetLastWriteTimeUtc(file, written);
        }
        Write(revoked.SerialText + "\n");
        var runtime = Own(new WorkerRuntime(Options(WorkerRole.Processor, revocationListPath: file), new TestWorker(_facilities.Record), _facilities));
        await runtime.StartAsync(ct);
        Task<bool> ServedAsync() => ServedWithAsync(caller, runtime, revoked, ct);

        var atStart = await ServedAsync();
        // The operator's tool has truncated the file in place and not yet written the new list when the worker rereads it.
        Write("");
        _time.Advance(TimeSpan.FromSeconds(30));
        var whileTruncated = await ServedAsync();
        Write(revoked.SerialText + "\n" + other.SerialText + "\n");
        _time.Advance(TimeSpan.FromSeconds(30));
        var afterTheRewrite = await ServedAsync();
        // Now the operator lifts the revocation on purpose.
        Write(other.SerialText + "\n");
        _time.Advance(TimeSpan.FromSeconds(30));
        var liftReadOnce = await ServedAsync();
        _time.Advance(TimeSpan.FromSeconds(30));
        var liftReadTwice = await ServedAsync();

        Assert.Multiple(() =>
        {
            Assert.That(atStart, Is.False, "the grant is revoked");
            Assert.That(whileTruncated, Is.False, "a truncated read does not lift the revocation");
            Assert.That(afterTheRewrite, Is.False);
            Assert.That(liftReadOnce, Is.False, "a lift waits for a second read to agree");
            Assert.That(liftReadTwice, Is.True, "the operator's lift is taken one period later");
            Assert.That(runtime.State, Is.EqualTo(WorkerRuntimeState.Ready));
        });
    }

    [Test]
    public async Task RevocationList_ReadThatLiftsOneAndAddsAnother_TakesTheNewRevocationAtOnce_AndTheLiftWhenTwoReadsAgree(CancellationToken ct)
    {
        Directory.CreateDirectory(_dataDir);
        var caller = Client();
        var now = _time.GetUtcNow();
        var stale = Cluster.Issue(caller.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 6);
        var compromised = Cluster.Issue(caller.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 7);
        var file = Path.Combine(_dataDir, "revoked.txt");
        File.WriteAllText(file, stale.SerialText + "\n");
        var runtime = Own(new WorkerRuntime(Options(WorkerRole.Processor, revocationListPath: file), new TestWorker(_facilities.Record), _facilities));
        await runtime.StartAsync(ct);
        Task<bool> ServedAsync(RoleGrant grant) => ServedWithAsync(caller, runtime, grant, ct);

        var compromisedAtStart = await ServedAsync(compromised);
        // The operator revokes the compromised grant and, in the same edit, drops the stale entry.
        File.WriteAllText(file, compromised.SerialText + "\n");
        File.SetLastWriteTimeUtc(file, File.GetLastWriteTimeUtc(file) + TimeSpan.FromMinutes(1));
        _time.Advance(TimeSpan.FromSeconds(30));
        var compromisedAfterOneRead = await ServedAsync(compromised);
        var staleAfterOneRead = await ServedAsync(stale);
        _time.Advance(TimeSpan.FromSeconds(30));
        var staleAfterTwoReads = await ServedAsync(stale);
        var compromisedAfterTwoReads = await ServedAsync(compromised);

        Assert.Multiple(() =>
        {
            Assert.That(compromisedAtStart, Is.True, "not vacuous: the grant was served before the edit");
            Assert.That(compromisedAfterOneRead, Is.False, "a new revocation is taken at the first read");
            Assert.That(staleAfterOneRead, Is.False, "a lift waits for a second read to agree");
            Assert.That(staleAfterTwoReads, Is.True, "the lift is taken one period later");
            Assert.That(compromisedAfterTwoReads, Is.False);
        });
    }

    [Test]
    public async Task SignedRevocationList_IsEnforced_AndHandedOnToCallersOlderThanIt_AndOneOfAnotherClusterStopsTheStart(CancellationToken ct)
    {
        Directory.CreateDirectory(_dataDir);
        var caller = Client();
        var now = _time.GetUtcNow();
        var revoked = Cluster.Issue(caller.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromHours(1), 6);
        var signed = Cluster.SignRevocations(new RevocationList([revoked.Serial], []), now);
        var file = Path.Combine(_dataDir, "revoked.signed");
        File.WriteAllText(file, signed.ToText() + "\n");
        var runtime = Own(new WorkerRuntime(Options(WorkerRole.Processor, revocationListPath: file), new TestWorker(_facilities.Record), _facilities));
        await runtime.StartAsync(ct);

        var served = await ServedWithAsync(caller, runtime, revoked, ct);
        var toNewcomer = await caller.RequestAsync(runtime.PeerId, RevocationExchange.Method, RevocationExchange.Request(null), null, ct);
        var toUpToDate = await caller.RequestAsync(runtime.PeerId, RevocationExchange.Method, RevocationExchange.Request(signed), null, ct);

        await runtime.StopAsync(ct); // the next start is the same node (its key is in the data directory)
        var otherCluster = new ClusterKey(KeyPair.FromSeed(Enumerable.Repeat((byte)0x34, 32).ToArray()));
        File.WriteAllText(file, otherCluster.SignRevocations(RevocationList.Empty, now).ToText());
        var refused = Assert.ThrowsAsync<WorkerConfigurationException>(async () =>
            await Own(new WorkerRuntime(Options(WorkerRole.Processor, revocationListPath: file), new TestWorker(_facilities.Record), _facilities)).StartAsync(ct));

        Assert.Multiple(() =>
        {
            Assert.That(served, Is.False, "the signed list's revocation holds on the worker that loaded it");
            Assert.That(toNewcomer, Is.EqualTo(signed.Bytes.ToArray()), "a caller without a list gets it");
            Assert.That(toUpToDate, Is.Empty, "a caller holding it gets nothing");
            Assert.That(refused!.Message, Does.Contain("Trust:RevocationList").And.Contain("another cluster"));
        });
    }

    /// <summary>Whether <paramref name="runtime"/> serves <paramref name="caller"/> presenting <paramref name="grant"/>; false when it refuses it as revoked.</summary>
    private static async Task<bool> ServedWithAsync(InMemoryRpcNode caller, WorkerRuntime runtime, RoleGrant grant, CancellationToken ct)
    {
        var metadata = new RpcCallOptions { Metadata = new Dictionary<string, string> { [GrantExchange.MetadataKey] = grant.ToText() } };
        try
        {
            await caller.RequestAsync(runtime.PeerId, TestWorker.Echo, "x"u8.ToArray(), metadata, ct);
            return true;
        }
        catch (RpcException e) when (e.Code == RpcStatusCode.PermissionDenied)
        {
            return false;
        }
    }

    private async Task<RoleGrant> PresentedGrantAsync(WorkerRuntime runtime, CancellationToken ct) =>
        RoleGrant.Decode(await Client().RequestAsync(runtime.PeerId, GrantExchange.Method, ReadOnlyMemory<byte>.Empty, null, ct));

    private (WorkerRuntime Runtime, TestWorker Worker) Create(Task? startGate = null, Exception? startFailure = null)
    {
        var worker = new TestWorker(_facilities.Record) { StartGate = startGate, StartFailure = startFailure };
        // A gateway serves any caller; Auth and processors serve only granted gateways (see the trust tests below).
        return (Own(new WorkerRuntime(Options(WorkerRole.Gateway), worker, _facilities)), worker);
    }

    private InMemoryRpcNode Client()
    {
        var node = _rpc.CreateNode();
        _owned.Add(node);
        return node;
    }

    /// <summary>The runtime's options; a worker signs its own grant with the test cluster's key unless given <paramref name="grant"/>.</summary>
    private WorkerRuntimeOptions Options(WorkerRole role, TimeSpan? selfGrantValidity = null, RoleGrant? grant = null, string? grantPath = null,
        string? revocationListPath = null) => new()
    {
        Role = role,
        DataDirectory = _dataDir,
        DrainTimeout = Drain,
        TimeProvider = _time,
        RandomSeed = 1,
        ClusterKey = role == WorkerRole.Bootstrap || grant is not null ? null : Cluster,
        SelfGrantValidity = selfGrantValidity ?? TimeSpan.FromDays(365),
        Grant = grant,
        GrantPath = grantPath,
        RevocationListPath = revocationListPath,
        GrantCachePeriod = TimeSpan.FromSeconds(30),
    };

    private static readonly ClusterKey Cluster = new(KeyPair.FromSeed(Enumerable.Repeat((byte)0x33, 32).ToArray()));

    private T Own<T>(T item)
        where T : IAsyncDisposable
    {
        _owned.Add(item);
        return item;
    }
}
