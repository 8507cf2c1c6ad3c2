using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Protocols.AutoNat;

/// <summary>
/// AutoNAT servers and clients on the in-memory network, on virtual time. A node is "behind a NAT"
/// when a partition fails new dials between it and the servers while the connections it opened
/// itself keep working — what a NAT that drops unsolicited inbound connections looks like.
/// </summary>
[TestFixture]
public sealed class AutoNatSimulationTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);

    /// <summary>As <see cref="HostOptions.IdleConnectionTimeout"/>'s default.</summary>
    private static readonly TimeSpan DefaultIdleConnectionTimeout = TimeSpan.FromMinutes(2);

    /// <summary>Hosts on one in-memory network, disposed together (clients first).</summary>
    private sealed class World(SimulationExecutor sim) : IAsyncDisposable
    {
        private readonly List<IAsyncDisposable> _owned = [];

        public InMemoryNetwork Network { get; } = new(sim.Clock, sim.Seed);
        public SimulationExecutor Sim => sim;

        /// <param name="identity">Tells apart hosts on one node (one address); the node's name when null.</param>
        /// <param name="listen">False for a second host on a node whose address another host listens on.</param>
        public async Task<P2PHost> HostAsync(string name, TimeSpan? idleConnectionTimeout = null, string? identity = null, bool listen = true,
            IReadOnlyList<Multiaddress>? announce = null)
        {
            var options = sim.HostOptionsFor(Network, name) with
            {
                AnnounceAddresses = announce ?? [],
                IdleConnectionTimeout = idleConnectionTimeout ?? DefaultIdleConnectionTimeout,
                Identity = KeyPair.FromRandom(sim.CreateRandom("identity", identity ?? name)),
            };
            var host = listen ? await sim.StartHostAsync(Network, name, options) : new P2PHost(options);
            _owned.Add(host);
            return host;
        }

        public async Task<(P2PHost Host, AutoNatServer Server)> ServerAsync(string name, AutoNatServerOptions? options = null, TimeSpan? idleConnectionTimeout = null)
        {
            var host = await HostAsync(name, idleConnectionTimeout);
            return (host, new AutoNatServer(host, options));
        }

        public async Task<List<(P2PHost Host, AutoNatServer Server)>> ServersAsync(int count, AutoNatServerOptions? options = null, TimeSpan? idleConnectionTimeout = null)
        {
            var servers = new List<(P2PHost, AutoNatServer)>();
            for (var i = 0; i < count; i++) servers.Add(await ServerAsync($"server{i}", options, idleConnectionTimeout));
            return servers;
        }

        public AutoNatClient Client(P2PHost host, AutoNatClientOptions? options = null)
        {
            var client = new AutoNatClient(host, options);
            _owned.Insert(0, client);
            return client;
        }

        /// <summary>Connects and waits for identify, which tells the client the server speaks AutoNAT and where it sees us.</summary>
        public static async Task ConnectAsync(P2PHost from, P2PHost to)
        {
            var connection = await from.ConnectAsync(to.AdvertisedAddresses[0], CancellationToken.None);
            await from.IdentifyAsync(connection, CancellationToken.None);
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var owned in _owned) await owned.DisposeAsync();
        }
    }

    private static string[] Names(IEnumerable<(P2PHost Host, AutoNatServer Server)> servers) =>
        servers.Select(s => s.Host.ListenAddresses[0].Components[0].ValueText).ToArray();

    [Test]
    public void PublicNode_DialledBackByThreeServers_ConcludesPublic() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var servers = await world.ServersAsync(3);
        var me = await world.HostAsync("me");
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var opened = world.Network.ConnectionsOpened;
        var client = world.Client(me);
        var changes = new List<NatStatus>();
        client.StatusChanged += changes.Add;

        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability != NatReachability.Unknown, Patience);

        Assert.That(client.Status.Reachability, Is.EqualTo(NatReachability.Public));
        Assert.That(client.Status.ReachedAddress, Is.EqualTo(InMemoryNetwork.AddressOf("me")));
        Assert.That(changes.Select(c => c.Reachability), Is.EqualTo(new[] { NatReachability.Public }));
        Assert.That(servers.Select(s => s.Server.RequestsAnswered), Is.All.EqualTo(1));
        Assert.That(world.Network.ConnectionsOpened - opened, Is.EqualTo(3), "each server dialled back on a connection of its own");
        Assert.That(me.Connections.Where(c => c.Direction == ConnectionDirection.Outbound), Has.All.Property(nameof(PeerConnection.IsClosed)).False,
            "the connections we opened stay as they were");
    });

    [Test]
    public void NodeTheServersCannotDial_ConcludesPrivate() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var servers = await world.ServersAsync(4);
        var me = await world.HostAsync("me");
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        world.Network.Partition(Names(servers), ["me"], PartitionMode.FailNewDials);
        var answers = new List<AutoNatDialResponse>();
        foreach (var (_, server) in servers) server.Answered += (_, answer) => answers.Add(answer);
        var client = world.Client(me);

        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability != NatReachability.Unknown, Patience);

        Assert.That(client.Status.Reachability, Is.EqualTo(NatReachability.Private));
        Assert.That(client.Status.ReachedAddress, Is.Null);
        Assert.That(answers, Has.Count.EqualTo(4).And.All.Property(nameof(AutoNatDialResponse.Status)).EqualTo(AutoNatResponseStatus.DialError));
        Assert.That(answers[0].StatusText, Does.Contain("partitioned"));
    });

    [TestCase("port-restricted cone", NatReachability.Private)]
    [TestCase("symmetric", NatReachability.Private)]
    [TestCase("full cone", NatReachability.Public)]
    public void NodeBehindANat_ConcludesWhatItsFilteringAllows(string kind, NatReachability expected) => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var behavior = kind switch
        {
            "full cone" => NatBehavior.FullCone,
            "symmetric" => NatBehavior.Symmetric,
            _ => NatBehavior.PortRestrictedCone,
        };
        world.Network.AddNatRouter("home", behavior, System.Net.IPAddress.Parse("198.51.100.20")).Add("me");
        var servers = await world.ServersAsync(3);
        var me = await world.HostAsync("me");
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var client = world.Client(me);

        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability != NatReachability.Unknown, Patience);

        // The servers see us at the router's mapping of our listen endpoint, and are asked to dial that:
        // only a NAT that lets strangers in (endpoint-independent filtering) lets their dial-backs through.
        Assert.That(client.Status.Reachability, Is.EqualTo(expected));
        if (expected == NatReachability.Public)
            Assert.That(client.Status.ReachedAddress!.ToString(), Does.StartWith("/ip4/198.51.100.20/tcp/"));
    });

    [Test]
    public void NodeBehindAFullConeNat_AnnouncesTheMappingServersReached_UntilItTurnsPrivate() => SimulationTest.Run(async sim =>
    {
        // A cloud VM's 1:1 NAT or a forwarded port: the node listens on an address nobody outside can dial, and
        // peers can reach it only at the router's mapping, which it learns from the servers that dialed it back.
        await using var world = new World(sim);
        world.Network.AddNatRouter("home", NatBehavior.FullCone, System.Net.IPAddress.Parse("198.51.100.20")).Add("me");
        var longIdle = TimeSpan.FromHours(1);
        var servers = await world.ServersAsync(3, idleConnectionTimeout: longIdle);
        var me = await world.HostAsync("me", longIdle);
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var reannounced = 0;
        me.AnnouncedAddressesChanged += () => reannounced++;
        var client = world.Client(me);

        client.Start();
        await sim.Clock.WaitUntilAsync(() => me.ConfirmedAddresses.Count > 0, Patience);

        var mapping = client.Status.ReachedAddress!;
        Assert.That(client.Status.Reachability, Is.EqualTo(NatReachability.Public));
        Assert.That(mapping.ToString(), Does.StartWith("/ip4/198.51.100.20/tcp/"));
        Assert.That(me.ConfirmedAddresses, Is.EqualTo(new[] { mapping }));
        Assert.That(me.AnnouncedAddresses, Is.EqualTo(new[] { mapping, InMemoryNetwork.AddressOf("me") }), "confirmed before listen addresses");
        Assert.That(reannounced, Is.EqualTo(1));
        var server = servers[0].Host;
        await sim.Clock.WaitUntilAsync(() => server.PeerStore.GetAddresses(me.PeerId).Contains(mapping), Patience);

        // A stranger that only heard of us from the server dials what it was told.
        var stranger = await world.HostAsync("stranger");
        var told = server.PeerStore.GetAddresses(me.PeerId).Where(a => a.Equals(mapping)).Select(a => a.WithPeerId(me.PeerId)).Single();
        var connection = await stranger.ConnectAsync(told, CancellationToken.None);
        Assert.That(connection.RemotePeer, Is.EqualTo(me.PeerId));

        // The servers can no longer dial in: at the next periodic check the address is taken back, from peers too.
        world.Network.Partition(Names(servers), ["me"], PartitionMode.FailNewDials);
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability == NatReachability.Private, TimeSpan.FromMinutes(30));
        Assert.That(me.ConfirmedAddresses, Is.Empty);
        Assert.That(me.AnnouncedAddresses, Is.EqualTo(new[] { InMemoryNetwork.AddressOf("me") }));
        await sim.Clock.WaitUntilAsync(() => !server.PeerStore.GetAddresses(me.PeerId).Contains(mapping), Patience);
        Assert.That(reannounced, Is.EqualTo(2));
    });

    [TestCase(true)]
    [TestCase(false)]
    public void NodeBehindAPortForward_IsFoundPublic_OnlyWhenItsOperatorAnnouncesTheForwardedPort(bool announced) => SimulationTest.Run(async sim =>
    {
        // Port 4001 of the router leads to the node; nothing the node sees tells it that number (its own dials
        // leave through other ports, which the router's port-restricted filter keeps closed to strangers).
        await using var world = new World(sim);
        var forwarded = Multiaddress.Parse("/ip4/198.51.100.20/tcp/4001");
        world.Network.AddNatRouter("home", NatBehavior.PortRestrictedCone, System.Net.IPAddress.Parse("198.51.100.20")).Add("me").Forward(4001, "me");
        var servers = await world.ServersAsync(3);
        var me = await world.HostAsync("me", announce: announced ? [forwarded] : null);
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var client = world.Client(me);

        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability != NatReachability.Unknown, Patience);

        if (!announced)
        {
            Assert.That(client.Status.Reachability, Is.EqualTo(NatReachability.Private));
            return;
        }
        Assert.That(client.Status.Reachability, Is.EqualTo(NatReachability.Public));
        Assert.That(client.Status.ReachedAddress, Is.EqualTo(forwarded));
        Assert.That(me.ConfirmedAddresses, Is.Empty, "the operator's address is announced already");
        Assert.That(me.AnnouncedAddresses[0], Is.EqualTo(forwarded));
        var stranger = await world.HostAsync("stranger");
        var connection = await stranger.ConnectAsync(forwarded.WithPeerId(me.PeerId), CancellationToken.None);
        Assert.That(connection.RemotePeer, Is.EqualTo(me.PeerId), "a stranger reaches the node through the forward");
    });

    [Test]
    public void AnAddressOnlyOneServerReached_IsNotAnnounced() => SimulationTest.Run(async sim =>
    {
        // One server could name any address we asked about (the host part came from peers' identify): it takes two.
        await using var world = new World(sim);
        world.Network.AddNatRouter("home", NatBehavior.FullCone, System.Net.IPAddress.Parse("198.51.100.20")).Add("me");
        var (server, _) = await world.ServerAsync("server0", idleConnectionTimeout: TimeSpan.FromHours(1));
        var me = await world.HostAsync("me", TimeSpan.FromHours(1));
        await World.ConnectAsync(me, server);
        var client = world.Client(me);

        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability == NatReachability.Public, TimeSpan.FromMinutes(10));
        await sim.Clock.AdvanceAsync(new AutoNatClientOptions().RefreshInterval);

        Assert.That(client.Status.Confidence, Is.GreaterThan(3), "the one server reached us again and again");
        Assert.That(me.ConfirmedAddresses, Is.Empty);
        Assert.That(me.AnnouncedAddresses, Is.EqualTo(new[] { InMemoryNetwork.AddressOf("me") }));
    });

    [Test]
    public void WithAnnouncingSwitchedOff_NothingIsConfirmed() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        world.Network.AddNatRouter("home", NatBehavior.FullCone, System.Net.IPAddress.Parse("198.51.100.20")).Add("me");
        var servers = await world.ServersAsync(3);
        var me = await world.HostAsync("me");
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var client = world.Client(me, new AutoNatClientOptions { AnnounceConfirmedAddresses = false });

        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability == NatReachability.Public, Patience);

        Assert.That(me.ConfirmedAddresses, Is.Empty);
    });

    [Test]
    public void NodeBehindAConeNat_AskingAPeerItHolePunchedTo_StillConcludesPrivate() => SimulationTest.Run(async sim =>
    {
        // `simulate --nat cone`: two processors behind port-restricted cone NATs hold a hole-punched
        // connection and each is the other's AutoNAT server. The peer's dial-back cannot take that
        // connection's four-tuple, so it leaves from another port, which our NAT drops. Were it let in,
        // the peer's OK would alternate with the public server's dial errors and nothing would be concluded.
        await using var world = new World(sim);
        world.Network.AddNatRouter("home", NatBehavior.PortRestrictedCone, System.Net.IPAddress.Parse("198.51.100.20")).Add("me");
        world.Network.AddNatRouter("away", NatBehavior.PortRestrictedCone, System.Net.IPAddress.Parse("198.51.100.30")).Add("peer");
        var (server, _) = await world.ServerAsync("server0");
        var (peer, peerServer) = await world.ServerAsync("peer");
        var me = await world.HostAsync("me");
        await World.ConnectAsync(me, server);
        await World.ConnectAsync(peer, server);
        var meAt = server.Connections.Single(c => c.RemotePeer == me.PeerId).RemoteAddress;
        var peerAt = server.Connections.Single(c => c.RemotePeer == peer.PeerId).RemoteAddress;
        var punch = me.DialDirectAsync(peerAt, peer.PeerId, ConnectionDirection.Outbound, CancellationToken.None);
        var punched = peer.DialDirectAsync(meAt, me.PeerId, ConnectionDirection.Inbound, CancellationToken.None);
        await me.IdentifyAsync(await punch, CancellationToken.None);
        await punched;
        var peerAnswers = new List<AutoNatDialResponse>();
        peerServer.Answered += (_, answer) => peerAnswers.Add(answer);
        var client = world.Client(me);

        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability != NatReachability.Unknown, Patience);

        Assert.That(client.Status.Reachability, Is.EqualTo(NatReachability.Private));
        Assert.That(peerAnswers, Is.Not.Empty.And.All.Property(nameof(AutoNatDialResponse.Status)).EqualTo(AutoNatResponseStatus.DialError));
    });

    [Test]
    public void PublicNode_ThatLosesReachability_TurnsPrivate_AtTheNextPeriodicCheck() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        // The connections stay open, as other traffic (the DHT) keeps them in a deployment: the
        // partition below lets open connections work and fails only new dials, both ways.
        var longIdle = TimeSpan.FromHours(1);
        var servers = await world.ServersAsync(3, idleConnectionTimeout: longIdle);
        var me = await world.HostAsync("me", longIdle);
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var options = new AutoNatClientOptions { RefreshInterval = TimeSpan.FromMinutes(10) };
        var client = world.Client(me, options);
        var changes = new List<(NatReachability Reachability, TimeSpan At)>();
        client.StatusChanged += status => changes.Add((status.Reachability, sim.Clock.Elapsed));
        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability == NatReachability.Public, Patience);
        var publicAt = sim.Clock.Elapsed;

        world.Network.Partition(Names(servers), ["me"], PartitionMode.FailNewDials);
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability == NatReachability.Private, TimeSpan.FromMinutes(30));

        Assert.That(changes.Select(c => c.Reachability), Is.EqualTo(new[] { NatReachability.Public, NatReachability.Private }));
        Assert.That(changes[1].At - publicAt, Is.GreaterThanOrEqualTo(options.RefreshInterval), "nothing is checked between periodic rounds");
    });

    [Test]
    public void Client_WithoutServers_StaysUnknown_AndConcludesOnceServersAppear() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var me = await world.HostAsync("me");
        var client = world.Client(me);
        client.Start();
        await sim.Clock.AdvanceAsync(TimeSpan.FromMinutes(5));
        Assert.That(client.Status, Is.EqualTo(NatStatus.Unknown));

        foreach (var (host, _) in await world.ServersAsync(3)) await World.ConnectAsync(me, host);
        var connectedAt = sim.Clock.Elapsed;
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability == NatReachability.Public, Patience);

        Assert.That(sim.Clock.Elapsed - connectedAt, Is.LessThanOrEqualTo(new AutoNatClientOptions().RetryInterval + TimeSpan.FromSeconds(10)),
            "an unknown status is retried every RetryInterval");
    });

    [Test]
    public void Client_AsksServersItKnew_AfterTheirConnectionsClosedAsIdle() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var servers = await world.ServersAsync(3);
        var me = await world.HostAsync("me");
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var client = world.Client(me, new AutoNatClientOptions { RefreshInterval = TimeSpan.FromMinutes(10) });
        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability == NatReachability.Public, Patience);
        await sim.Clock.WaitUntilAsync(() => me.Connections.Count == 0, TimeSpan.FromMinutes(5));

        await sim.Clock.WaitUntilAsync(() => servers.All(s => s.Server.RequestsAnswered == 2), TimeSpan.FromMinutes(15));

        Assert.That(client.Status.Reachability, Is.EqualTo(NatReachability.Public));
        Assert.That(client.Status.Confidence, Is.EqualTo(6), "three more agreeing answers");
    });

    [Test]
    public void Client_AsksAtMostPeersPerRound_ChosenBySeed() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var servers = await world.ServersAsync(6);
        var me = await world.HostAsync("me");
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var client = world.Client(me, new AutoNatClientOptions { PeersPerRound = 3 });

        var status = await client.CheckAsync(CancellationToken.None);

        Assert.That(status.Reachability, Is.EqualTo(NatReachability.Public));
        Assert.That(servers.Sum(s => s.Server.RequestsAnswered), Is.EqualTo(3));
    });

    [Test]
    public void Server_DialsOnlyTheRequestersObservedHost_NeverAThirdParty() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var (serverHost, _) = await world.ServerAsync("server");
        var me = await world.HostAsync("me");
        await world.HostAsync("victim");
        await World.ConnectAsync(me, serverHost);
        var client = world.Client(me);

        var answer = await client.AskAsync(serverHost.PeerId, [InMemoryNetwork.AddressOf("victim")], CancellationToken.None);

        Assert.That(answer.Status, Is.EqualTo(AutoNatResponseStatus.DialRefused));
        Assert.That(answer.StatusText, Does.Contain("observed host"));
        Assert.That(world.Network.ConnectionCountOf("victim"), Is.Zero);
    });

    [Test]
    public void Server_RequestForAnotherPeer_IsABadRequest() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var (serverHost, _) = await world.ServerAsync("server");
        var me = await world.HostAsync("me");
        await World.ConnectAsync(me, serverHost);
        var someoneElse = KeyPair.FromRandom(sim.CreateRandom("someone")).PeerId;

        var answer = await ExchangeAsync(me, serverHost.PeerId, s =>
            AutoNatMessageCodec.WriteRequestAsync(s, new AutoNatDialRequest(someoneElse, [InMemoryNetwork.AddressOf("me")]), CancellationToken.None));

        Assert.That(answer, Does.StartWith("BadRequest"));
    });

    [Test]
    public void Server_PerPeerRate_RefusesPastItsLimit_UntilTheWindowMoves() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var options = new AutoNatServerOptions { MaxDialBacksPerPeer = 3, RateWindow = TimeSpan.FromMinutes(1) };
        var (serverHost, _) = await world.ServerAsync("server", options);
        var me = await world.HostAsync("me");
        var other = await world.HostAsync("other");
        await World.ConnectAsync(me, serverHost);
        await World.ConnectAsync(other, serverHost);
        var client = world.Client(me);

        var statuses = new List<AutoNatResponseStatus>();
        for (var i = 0; i < 4; i++) statuses.Add((await client.AskAsync(serverHost.PeerId, CancellationToken.None)).Status);
        var otherAnswer = await world.Client(other).AskAsync(serverHost.PeerId, CancellationToken.None);
        await sim.Clock.AdvanceAsync(options.RateWindow);
        var afterWindow = await client.AskAsync(serverHost.PeerId, CancellationToken.None);

        Assert.That(statuses, Is.EqualTo(new[] { AutoNatResponseStatus.Ok, AutoNatResponseStatus.Ok, AutoNatResponseStatus.Ok, AutoNatResponseStatus.DialRefused }));
        Assert.That(otherAnswer.Status, Is.EqualTo(AutoNatResponseStatus.Ok), "the limit is per peer");
        Assert.That(afterWindow.Status, Is.EqualTo(AutoNatResponseStatus.Ok));
    });

    [Test]
    public void Server_PerAddressRate_CountsEveryPeerAtOneAddress() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var (serverHost, _) = await world.ServerAsync("server", new AutoNatServerOptions { MaxDialBacksPerAddress = 2 });
        // Two peers on one node: both are observed at /memory/shared (a NAT's address, a machine minting PeerIds).
        var first = await world.HostAsync("shared");
        var second = await world.HostAsync("shared", identity: "second", listen: false);
        await World.ConnectAsync(first, serverHost);
        await World.ConnectAsync(second, serverHost);
        var shared = InMemoryNetwork.AddressOf("shared");

        var statuses = new List<AutoNatResponseStatus>
        {
            (await world.Client(first).AskAsync(serverHost.PeerId, CancellationToken.None)).Status,
            (await world.Client(first).AskAsync(serverHost.PeerId, CancellationToken.None)).Status,
        };
        var third = await world.Client(second).AskAsync(serverHost.PeerId, [shared], CancellationToken.None);

        Assert.That(statuses, Is.All.EqualTo(AutoNatResponseStatus.Ok));
        Assert.That(third.Status, Is.EqualTo(AutoNatResponseStatus.DialRefused));
        Assert.That(third.StatusText, Does.Contain("limit per address"));
    });

    [Test]
    public void Server_GlobalRate_RefusesPastItsLimit() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var (serverHost, _) = await world.ServerAsync("server", new AutoNatServerOptions { MaxDialBacks = 2 });
        var statuses = new List<AutoNatResponseStatus>();
        for (var i = 0; i < 3; i++)
        {
            var host = await world.HostAsync($"client{i}");
            await World.ConnectAsync(host, serverHost);
            statuses.Add((await world.Client(host).AskAsync(serverHost.PeerId, CancellationToken.None)).Status);
        }

        Assert.That(statuses, Is.EqualTo(new[] { AutoNatResponseStatus.Ok, AutoNatResponseStatus.Ok, AutoNatResponseStatus.DialRefused }));
    });

    [Test]
    public void Server_ConcurrencyCap_RefusesWhileADialBackRuns() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var (serverHost, _) = await world.ServerAsync("server", new AutoNatServerOptions { MaxConcurrentDialBacks = 1 });
        var slow = await world.HostAsync("slow");
        var fast = await world.HostAsync("fast");
        await World.ConnectAsync(slow, serverHost);
        await World.ConnectAsync(fast, serverHost);
        // Only the server's packets towards "slow" are late: its request arrives at once, the dial-back takes seconds.
        world.Network.Link("server", "slow").Latency = TimeSpan.FromSeconds(3);

        var slowAnswer = world.Client(slow).AskAsync(serverHost.PeerId, CancellationToken.None);
        // The request arrives once the protocol is agreed (3 s); the dial-back then needs 3 s per round trip.
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(4));
        var fastAnswer = await world.Client(fast).AskAsync(serverHost.PeerId, CancellationToken.None);

        Assert.That(fastAnswer.Status, Is.EqualTo(AutoNatResponseStatus.DialRefused));
        Assert.That(fastAnswer.StatusText, Does.Contain("dial-backs are running"));
        Assert.That((await slowAnswer).Status, Is.EqualTo(AutoNatResponseStatus.Ok));
    });

    [Test]
    public void Server_DialBackTimeout_AnswersDialError() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var options = new AutoNatServerOptions { DialBackTimeout = TimeSpan.FromSeconds(2) };
        var (serverHost, _) = await world.ServerAsync("server", options);
        var me = await world.HostAsync("me");
        await World.ConnectAsync(me, serverHost);
        world.Network.Link("server", "me").Latency = TimeSpan.FromSeconds(5);
        var start = sim.Clock.Elapsed;

        var answer = await world.Client(me).AskAsync(serverHost.PeerId, CancellationToken.None);

        Assert.That(answer.Status, Is.EqualTo(AutoNatResponseStatus.DialError));
        Assert.That(answer.StatusText, Does.Contain("no connection within"));
        // Agreeing on the protocol and the answer cost 5 s each; a finished dial-back would add 10 s and its handshake.
        Assert.That(sim.Clock.Elapsed - start, Is.LessThan(TimeSpan.FromSeconds(15)), "the dial-back gave up at its timeout, not after the dial");
    });

    [Test]
    public void Server_DialsEachAddressOnce_HoweverOftenItIsSent() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var (serverHost, _) = await world.ServerAsync("server");
        var me = await world.HostAsync("me");
        await World.ConnectAsync(me, serverHost);
        world.Network.Partition(["server"], ["me"], PartitionMode.FailNewDials);
        var mine = InMemoryNetwork.AddressOf("me");
        var addresses = Enumerable.Range(0, 6).Select(i => mine.WithPeerId(me.PeerId)).Append(mine).ToArray();

        var answer = await world.Client(me).AskAsync(serverHost.PeerId, addresses, CancellationToken.None);

        Assert.That(answer.Status, Is.EqualTo(AutoNatResponseStatus.DialError));
        Assert.That(answer.StatusText.Split("; "), Has.Length.EqualTo(1), "one failed dial for seven copies of one address");
    });

    [Test]
    public void Server_BadInput_IsAnsweredOrReset_AndTheServerKeepsServing() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var options = new AutoNatServerOptions { RequestTimeout = TimeSpan.FromSeconds(5) };
        var (serverHost, server) = await world.ServerAsync("server", options);
        var me = await world.HostAsync("me");
        await World.ConnectAsync(me, serverHost);
        var server_ = serverHost.PeerId;

        var malformed = await ExchangeAsync(me, server_, s => LengthPrefixedMessage.WriteAsync(s, new byte[] { 0xFF, 0xFF, 0xFF }, CancellationToken.None));
        var oversized = await ExchangeAsync(me, server_, async s => await s.WriteAsync(Varint.Encode(AutoNatMessageCodec.MaxMessageLength + 1)));
        var before = sim.Clock.Elapsed;
        var truncated = await ExchangeAsync(me, server_, async s => await s.WriteAsync(new byte[] { 40, 0x08, 0x00 }), completeWrites: false);
        var stalledFor = sim.Clock.Elapsed - before;
        var response = await ExchangeAsync(me, server_, s => LengthPrefixedMessage.WriteAsync(s,
            new Facilities.Net.Protocols.AutoNat.Proto.Message { Type = Facilities.Net.Protocols.AutoNat.Proto.Message.Types.MessageType.DialResponse }, CancellationToken.None));
        var valid = await world.Client(me).AskAsync(server_, CancellationToken.None);

        Assert.That(malformed, Does.StartWith("BadRequest"));
        Assert.That(oversized, Does.StartWith("failed"));
        Assert.That(truncated, Does.StartWith("failed"));
        Assert.That(stalledFor, Is.GreaterThanOrEqualTo(options.RequestTimeout), "a stalled request holds the stream until the request timeout");
        Assert.That(response, Does.StartWith("BadRequest"));
        Assert.That(valid.Status, Is.EqualTo(AutoNatResponseStatus.Ok));
        Assert.That(server.RequestsAnswered, Is.EqualTo(3));
    });

    [Test]
    public void Server_RandomRequests_AreAnsweredOrReset_AndItKeepsServing() => SimulationTest.Run(async sim =>
    {
        await using var world = new World(sim);
        var options = new AutoNatServerOptions { RequestTimeout = TimeSpan.FromSeconds(2), MaxDialBacksPerPeer = 100, MaxDialBacksPerAddress = 100, MaxDialBacks = 100 };
        var (serverHost, server) = await world.ServerAsync("server", options);
        var me = await world.HostAsync("me");
        await World.ConnectAsync(me, serverHost);
        var random = sim.CreateRandom("garbage");
        var outcomes = new Dictionary<string, int>();

        for (var i = 0; i < 60; i++)
        {
            var garbage = new byte[random.Next(1, 64)];
            random.NextBytes(garbage);
            // Every other payload gets a prefix that matches its length, so the protobuf parser sees it too.
            if (i % 2 == 0) garbage[0] = (byte)(garbage.Length - 1);
            var outcome = await ExchangeAsync(me, serverHost.PeerId, async s => await s.WriteAsync(garbage));
            var kind = outcome.Split(':')[0];
            outcomes[kind] = outcomes.GetValueOrDefault(kind) + 1;
        }
        var valid = await world.Client(me).AskAsync(serverHost.PeerId, CancellationToken.None);

        TestContext.Out.WriteLine(string.Join(", ", outcomes.Select(o => $"{o.Key}: {o.Value}")));
        Assert.That(outcomes.Keys, Is.SubsetOf(new[] { "failed", nameof(AutoNatResponseStatus.BadRequest), nameof(AutoNatResponseStatus.DialRefused), nameof(AutoNatResponseStatus.Ok) }));
        Assert.That(valid.Status, Is.EqualTo(AutoNatResponseStatus.Ok));
        Assert.That(me.GetConnection(serverHost.PeerId), Is.Not.Null, "bad requests cost their stream, not the connection");
    });

    [Test]
    public void SameSeed_SameTrace()
    {
        var first = SimulationTest.Run(PublicScenarioAsync, SimulationTest.Options(seed: 4242));
        var second = SimulationTest.Run(PublicScenarioAsync, SimulationTest.Options(seed: 4242));

        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash));
        Assert.That(second.Clock.Elapsed, Is.EqualTo(first.Clock.Elapsed));
    }

    private static async Task PublicScenarioAsync(SimulationExecutor sim)
    {
        await using var world = new World(sim);
        world.Network.ConfigureLinks(link =>
        {
            link.Latency = TimeSpan.FromMilliseconds(20);
            link.Jitter = TimeSpan.FromMilliseconds(10);
        });
        var servers = await world.ServersAsync(5);
        var me = await world.HostAsync("me");
        foreach (var (host, _) in servers) await World.ConnectAsync(me, host);
        var client = world.Client(me);
        client.Start();
        await sim.Clock.WaitUntilAsync(() => client.Status.Reachability == NatReachability.Public, Patience);
    }

    /// <summary>Opens an AutoNAT stream, lets <paramref name="write"/> send anything, and reports the answer ("Status: text") or how reading it failed.</summary>
    private static async Task<string> ExchangeAsync(P2PHost from, PeerId server, Func<Stream, ValueTask> write, bool completeWrites = true)
    {
        var stream = await from.OpenStreamAsync(server, AutoNatMessageCodec.ProtocolId, CancellationToken.None);
        await using (stream)
        {
            await write(stream);
            if (completeWrites) await stream.CompleteWritesAsync(CancellationToken.None);
            try
            {
                var answer = await AutoNatMessageCodec.ReadResponseAsync(stream, AutoNatMessageCodec.MaxMessageLength, CancellationToken.None);
                return $"{answer.Status}: {answer.StatusText}";
            }
            catch (IOException e)
            {
                return $"failed: {e.GetType().Name}: {e.Message}";
            }
        }
    }
}
