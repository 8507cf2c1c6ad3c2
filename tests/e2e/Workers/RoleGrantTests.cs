using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Client;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// Only peers the operator granted a role act in it. Rogue peers announce the auth, gateway and
/// processor topics — presenting no grant, an expired one, a revoked one, one of another cluster,
/// one for another role, or a real worker's grant (not theirs) — and record every request that reaches
/// them: none ever does, while the user's journey goes through the real workers; with only rogues
/// left for a role, the caller gets Unavailable naming that role.
/// </summary>
[TestFixture]
public sealed class RoleGrantTests
{
    private static readonly string[] Kinds = ["none", "expired", "revoked", "other-cluster", "other-role", "stolen"];

    [Test]
    public void Journey_WithRoguesClaimingEveryRole_WorksThroughTheRealWorkers_AndNoRogueReceivesARequest() => SimulationTest.Run(async sim =>
    {
        await using var network = await StartWithRoguesAsync();
        var (client, user, _) = await network.SignedUpClientAsync(CancellationToken.None);

        var models = await client.ModelsAsync(CancellationToken.None);
        var whole = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None);
        var chunks = await Requests.CollectAsync(client.InferStreamAsync(Requests.Greedy(network.Data.Prompt(), seed: 6), CancellationToken.None));
        var keys = await client.ListApiKeysAsync(CancellationToken.None);
        var cancelled = await client.CancelAsync("no-such-request", CancellationToken.None);
        await client.LoginAsync(user.Email, user.Password, CancellationToken.None);

        var rogues = network.Rogues.ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(whole.Text, Is.Not.Empty);
            Assert.That(whole.Processor, Is.AnyOf(network.Processor(1).PeerId.ToString(), network.Processor(2).PeerId.ToString()));
            Assert.That(chunks, Is.Not.Empty);
            Assert.That(models.Single(m => m.Name == WorkerCluster.Model).Processors, Is.EqualTo(2), "rogue processors are not counted");
            Assert.That(keys, Has.Count.EqualTo(1));
            Assert.That(cancelled, Is.False);
            Assert.That(rogues, Has.Length.EqualTo(Kinds.Length * 3));
            foreach (var rogue in rogues)
            {
                Assert.That(rogue.Received, Is.Empty, $"requests reached rogue {rogue.PeerId}");
                Assert.That(rogue.GrantQueries, Is.All.EqualTo(0), "a grant query carries nothing of the caller's");
            }
            // Not vacuous: every rogue gateway and processor was found and its grant looked at (calls to all providers check each).
            foreach (var rogue in rogues.Where(r => RoleOfRogue(network, r) is GrantRole.Gateway or GrantRole.Processor && r.Grant is not null))
                Assert.That(rogue.GrantQueries, Is.Not.Empty, $"rogue {rogue.PeerId} was never considered");
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Register_WithOnlyRogueAuths_IsUnavailableNamingAuth_AndThePasswordReachesNoRogue() => SimulationTest.Run(async sim =>
    {
        await using var network = await StartWithRoguesAsync();
        await network.Cluster.StopAsync(WorkerCluster.AuthNode, CancellationToken.None);
        var client = network.NewClient();
        var user = network.Data.User();

        var failure = await WorkerCluster.FailureOfAsync(() => client.RegisterAsync(user.Email, user.Password, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(failure.Code, Is.EqualTo(RpcStatusCode.Unavailable));
            Assert.That(failure.Message, Does.Contain("auth"));
            Assert.That(failure.Message, Does.Contain("no valid auth grant"), failure.Message);
            foreach (var rogue in network.Rogues) Assert.That(rogue.Received, Is.Empty, $"requests reached rogue {rogue.PeerId}");
            foreach (var rogue in AuthRogues(network).Where(r => r.Grant is not null))
                Assert.That(rogue.GrantQueries, Is.Not.Empty, $"rogue auth {rogue.PeerId} was never considered");
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Register_WithOnlyRogueGateways_IsUnavailableNamingGateway_AndNothingIsSent() => SimulationTest.Run(async sim =>
    {
        await using var network = await StartWithRoguesAsync();
        await network.Cluster.StopAsync(WorkerCluster.GatewayNode, CancellationToken.None);
        var client = network.NewClient();
        var user = network.Data.User();

        var failure = await WorkerCluster.FailureOfAsync(() => client.RegisterAsync(user.Email, user.Password, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(failure.Code, Is.EqualTo(RpcStatusCode.Unavailable));
            Assert.That(failure.Message, Does.Contain("no valid gateway grant"), failure.Message);
            foreach (var rogue in network.Rogues) Assert.That(rogue.Received, Is.Empty, $"requests reached rogue {rogue.PeerId}");
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Infer_WithOnlyRogueProcessors_IsUnavailableNamingTheProcessors_AndThePromptReachesNoRogue() => SimulationTest.Run(async sim =>
    {
        await using var network = await StartWithRoguesAsync();
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        await network.Cluster.StopAsync(WorkerCluster.ProcessorName(1), CancellationToken.None);
        await network.Cluster.StopAsync(WorkerCluster.ProcessorName(2), CancellationToken.None);
        // The gateway's cache of processors outlives them; let it expire so the topic is looked up afresh.
        await network.AdvanceAsync(TimeSpan.FromMinutes(1));

        var failure = await WorkerCluster.FailureOfAsync(() => client.InferAsync(Requests.Greedy("secret prompt", seed: 1), CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(failure.Code, Is.EqualTo(RpcStatusCode.Unavailable));
            Assert.That(failure.Message, Does.Contain("processor"), failure.Message);
            foreach (var rogue in network.Rogues) Assert.That(rogue.Received, Is.Empty, $"requests reached rogue {rogue.PeerId}");
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void RevokingAProcessorsGrant_StopsTheGatewayFromSendingItWork() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var revoked = network.Processor(1);

        network.Revoke(new RevocationList([revoked.Grant!.Serial], []));
        var served = new List<string>();
        for (var i = 0; i < 6; i++)
            served.Add((await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: i), CancellationToken.None)).Processor);

        Assert.That(served, Is.All.EqualTo(network.Processor(2).PeerId.ToString()), "the revoked processor gets no more requests");
    }, WorkerCluster.Simulation());

    [Test]
    public void ASignedRevocationListGivenToAuthAlone_ReachesTheGatewayAndTheProcessors_AndTheRevokedProcessorGetsNoMoreWork() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var revoked = network.Processor(1);
        var list = network.Cluster.ClusterKey.SignRevocations(new RevocationList([revoked.Grant!.Serial], []), network.Cluster.Time.GetUtcNow());

        network.InstallSignedRevocations(WorkerCluster.AuthNode, list);
        // The gateway asks Auth for newer lists when it next checks Auth's grant: once its cached copy is a period old.
        await network.AdvanceAsync(WorkerCluster.GrantCachePeriod + TimeSpan.FromSeconds(1));
        var served = new List<string>();
        for (var i = 0; i < 6; i++)
            served.Add((await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: i), CancellationToken.None)).Processor);

        Assert.That(served, Is.All.EqualTo(network.Processor(2).PeerId.ToString()), "the revoked processor gets no more requests");
        Assert.That(network.SignedRevocationsOf(WorkerCluster.ProcessorName(2))?.Issued, Is.EqualTo(list.Issued),
            "the processor, which never asks gateways for grants, learned it from the gateway's requests");
    }, WorkerCluster.Simulation());

    [Test]
    public void Journey_WithSilentRoguesClaimingEveryRole_StaysWithinTheClientsTimeouts_AndWaitsOnEachRogueAsTheBackOffAllows() => SimulationTest.Run(async sim =>
    {
        // Rogues that announce each role's topics and never answer the grant query: each such query
        // waited 10 s, so a call with a shorter timeout failed before it reached a real worker.
        var rogues = new[] { GrantRole.Auth, GrantRole.Gateway, GrantRole.Processor }
            .SelectMany(role => new[] { 1, 2 }.Select(n => new RogueSpec($"rogue-silent{n}-{role.Name()}", TopicsOf(role), (_, _) => null, Silent: true)))
            .ToList();
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Rogues = rogues }, CancellationToken.None);
        var callTimeout = TimeSpan.FromSeconds(5);
        var client = network.NewClient(new ClientOptions { CallTimeout = callTimeout });
        var user = network.Data.User();
        var time = network.Cluster.Time;
        var journeyStarted = time.GetTimestamp();
        var took = new List<(string Call, TimeSpan Took)>();
        async Task<T> Timed<T>(string call, Func<Task<T>> run)
        {
            var started = time.GetTimestamp();
            var result = await run();
            took.Add((call, time.GetElapsedTime(started)));
            return result;
        }

        await Timed("register", () => client.RegisterAsync(user.Email, user.Password, CancellationToken.None));
        await Timed("login", () => client.LoginAsync(user.Email, user.Password, CancellationToken.None));
        await Timed("createApiKey", () => client.CreateApiKeyAsync("silent", CancellationToken.None));
        var first = await Timed("first infer", () => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 1), CancellationToken.None));
        var second = await Timed("second infer", () => client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 2), CancellationToken.None));
        await Timed("listApiKeys", () => client.ListApiKeysAsync(CancellationToken.None));
        var journey = time.GetElapsedTime(journeyStarted);

        var silent = network.Rogues.ToArray();
        var log = string.Join(", ", took.Select(t => $"{t.Call} {t.Took.TotalSeconds:0.###} s"));
        Assert.Multiple(() =>
        {
            Assert.That(first.Text, Is.Not.Empty);
            Assert.That(second.Text, Is.Not.Empty);
            foreach (var (call, t) in took.Where(t => !t.Call.EndsWith("infer", StringComparison.Ordinal)))
                Assert.That(t, Is.LessThanOrEqualTo(callTimeout), $"{call}: {log}");
            // Each silent rogue costs an inference one wait at most, never a call's whole timeout: the client's
            // check of a silent gateway (ExchangeTimeout, 10 s, within the 5-minute inference timeout), the
            // gateway's check of a silent Auth and its first look at the processors (half its 10 s backend
            // timeout each). Which rogues an inference meets is the seed's choice, and a rogue's failed query is
            // held only an eighth of the cache period at first (a peer that was down is asked again soon), so
            // each inference may meet them again: the sum of all of them bounds each inference.
            var backendHalf = new GatewayOptions().BackendTimeout / 2;
            var bound = 2 * TrustedRpcClient.ExchangeTimeout + 2 * backendHalf + backendHalf;
            foreach (var (call, t) in took.Where(t => t.Call.EndsWith("infer", StringComparison.Ordinal)))
                Assert.That(t, Is.LessThanOrEqualTo(bound), $"{call}: {log}");
            Assert.That(silent, Has.Length.EqualTo(6));
            foreach (var rogue in silent) Assert.That(rogue.Received, Is.Empty, $"requests reached rogue {rogue.PeerId}");
            // Every processor is asked for its status, so each rogue one was considered; then its failure was held,
            // for a back-off doubling with each failure in a row, so it was asked no more often than that allows.
            // (An auth or gateway rogue may be asked more: a query a nearly spent call gave under a second is not held against it.)
            var allowed = QueriesTheBackOffAllows(journey, WorkerCluster.GrantCachePeriod);
            foreach (var rogue in silent.Where(r => RoleOfRogue(network, r) == GrantRole.Processor))
                Assert.That(rogue.GrantQueries, Has.Count.InRange(1, allowed), $"processor rogue {rogue.PeerId}, {allowed} allowed in {journey}: {log}");
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void AuthAndProcessor_RefuseCallersWithoutAGatewayGrant_EvenOneShowingAStolenGrant() => SimulationTest.Run(async sim =>
    {
        await using var network = await StartWithRoguesAsync();
        var intruder = network.Cluster[RogueName("stolen", GrantRole.Gateway)].Get<RpcNode>();
        var stolen = new Dictionary<string, string> { [GrantExchange.MetadataKey] = network.Gateway.Grant!.ToText() };
        var login = new LoginRequest { Email = "ada@example.com", Password = "a long passphrase 123" };

        var bare = await WorkerCluster.FailureOfAsync(() =>
            intruder.RequestAsync(network.Auth.PeerId, WorkerMethods.Auth.Login, login, LoginResponse.Parser, null, CancellationToken.None));
        var withStolen = await WorkerCluster.FailureOfAsync(() =>
            intruder.RequestAsync(network.Auth.PeerId, WorkerMethods.Auth.Login, login, LoginResponse.Parser,
                new RpcCallOptions { Metadata = stolen }, CancellationToken.None));
        var processor = await WorkerCluster.FailureOfAsync(() =>
            intruder.RequestAsync(network.Processor(1).PeerId, WorkerMethods.Processor.Infer, Requests.Greedy("free inference", seed: 1),
                InferResponse.Parser, new RpcCallOptions { Metadata = stolen }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(bare.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
            Assert.That(bare.Message, Does.Contain("gateway grant"));
            Assert.That(withStolen.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
            Assert.That(withStolen.Message, Does.Contain("another peer"));
            Assert.That(processor.Code, Is.EqualTo(RpcStatusCode.PermissionDenied));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Client_WithoutAClusterId_RefusesToSendCredentials() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(null, CancellationToken.None);
        var node = network.Cluster[WorkerCluster.ClientNode];
        await using var client = new P2PInferenceClient(node.Get<RpcNode>(), new ClientOptions { TimeProvider = network.Cluster.Time });

        var failure = await WorkerCluster.FailureOfAsync(() => client.RegisterAsync("ada@example.com", "a long passphrase 123", CancellationToken.None));

        Assert.That(failure.Message, Is.EqualTo(P2PInferenceClient.NoClusterMessage));
        Assert.That(failure.Message, Does.Not.Contain("\n"));
    }, WorkerCluster.Simulation());

    /// <summary>
    /// How many times a caller may ask a peer that never answers within <paramref name="span"/>: once, then again each time
    /// its failure stops being held (an eighth of <paramref name="cachePeriod"/>, doubling with each failure in a row, up to the period).
    /// </summary>
    private static int QueriesTheBackOffAllows(TimeSpan span, TimeSpan cachePeriod)
    {
        var queries = 1;
        var at = TimeSpan.Zero;
        for (var held = cachePeriod / 8; at + held <= span; held = held * 2 < cachePeriod ? held * 2 : cachePeriod)
        {
            at += held;
            queries++;
        }
        return queries;
    }

    private static string[] TopicsOf(GrantRole role) => role switch
    {
        GrantRole.Auth => [WorkerTopics.Auth],
        GrantRole.Gateway => [WorkerTopics.Gateway],
        _ => [WorkerTopics.Processor, WorkerTopics.Model(WorkerCluster.Model)],
    };

    private static async Task<WorkerCluster> StartWithRoguesAsync()
    {
        var other = new ClusterKey(KeyPair.FromSeed(new byte[32]));
        var rogues = new List<RogueSpec>();
        foreach (var role in new[] { GrantRole.Auth, GrantRole.Gateway, GrantRole.Processor })
        {
            var topics = TopicsOf(role);
            foreach (var kind in Kinds)
            {
                rogues.Add(new RogueSpec(RogueName(kind, role), topics, (cluster, peer) => kind switch
                {
                    "none" => null,
                    "expired" => cluster.IssueGrant(peer, role, cluster.Time.GetUtcNow() - TimeSpan.FromDays(2), cluster.Time.GetUtcNow() - TimeSpan.FromDays(1)),
                    "revoked" => cluster.IssueGrant(peer, role),
                    "other-cluster" => cluster.IssueGrant(peer, role, signer: other),
                    "other-role" => cluster.IssueGrant(peer, role == GrantRole.Processor ? GrantRole.Gateway : GrantRole.Processor),
                    "stolen" => cluster[RealNodeOf(role)].Grant,
                    _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
                }));
            }
        }
        var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Rogues = rogues }, CancellationToken.None);
        var revoked = network.Rogues.Where(r => network.Cluster.NodeOf(r.PeerId)!.Name.StartsWith("rogue-revoked-", StringComparison.Ordinal));
        network.Revoke(new RevocationList(revoked.Select(r => r.Grant!.Serial), []));
        return network;
    }

    private static string RogueName(string kind, GrantRole role) => $"rogue-{kind}-{role.Name()}";

    private static string RealNodeOf(GrantRole role) => role switch
    {
        GrantRole.Auth => WorkerCluster.AuthNode,
        GrantRole.Gateway => WorkerCluster.GatewayNode,
        _ => WorkerCluster.ProcessorName(1),
    };

    private static GrantRole RoleOfRogue(WorkerCluster network, RoguePeer rogue)
    {
        var name = network.Cluster.NodeOf(rogue.PeerId)!.Name;
        return GrantRoles.TryParse(name[(name.LastIndexOf('-') + 1)..], out var role) ? role : throw new InvalidOperationException(name);
    }

    private static IEnumerable<RoguePeer> AuthRogues(WorkerCluster network) => network.Rogues.Where(r => RoleOfRogue(network, r) == GrantRole.Auth);
}
