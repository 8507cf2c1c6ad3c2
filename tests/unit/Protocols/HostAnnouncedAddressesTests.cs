using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// What a host tells peers to dial it at: the operator's announce addresses, then AutoNAT's confirmed ones, then its listen
/// addresses, with 0.0.0.0 and :: given as the machine's addresses (a peer that dials 0.0.0.0 reaches itself).
/// </summary>
[TestFixture]
public sealed class HostAnnouncedAddressesTests
{
    private static readonly IPAddress[] Machine =
        [IPAddress.Parse("192.0.2.7"), IPAddress.Parse("2001:db8::7"), IPAddress.Loopback, IPAddress.IPv6Loopback];

    [Test]
    public void UnspecifiedListenAddresses_AreAnnouncedAsEachMachineAddressOfTheirFamily()
    {
        var asked = 0;
        var announced = new AnnouncedAddresses([], () => { asked++; return Machine; });

        announced.SetListen([Multiaddress.Parse("/ip4/0.0.0.0/tcp/4001"), Multiaddress.Parse("/ip6/::/tcp/4002"), Multiaddress.Parse("/ip4/10.0.0.5/tcp/4003")]);

        Assert.That(announced.All.Select(a => a.ToString()), Is.EqualTo(new[]
        {
            "/ip4/192.0.2.7/tcp/4001", "/ip4/127.0.0.1/tcp/4001",
            "/ip6/2001:db8::7/tcp/4002", "/ip6/::1/tcp/4002",
            "/ip4/10.0.0.5/tcp/4003",
        }));
        Assert.That(asked, Is.EqualTo(1), "the machine's addresses are read once per change of listeners, not per identify");
    }

    [Test]
    public void SpecifiedListenAddresses_NeverAskForTheMachinesAddresses()
    {
        var announced = new AnnouncedAddresses([], () => throw new AssertionException("not asked"));

        announced.SetListen([InMemoryNetwork.AddressOf("a"), Multiaddress.Parse("/ip4/127.0.0.1/tcp/4001")]);

        Assert.That(announced.All, Is.EqualTo(new[] { InMemoryNetwork.AddressOf("a"), Multiaddress.Parse("/ip4/127.0.0.1/tcp/4001") }));
    }

    [Test]
    public void AnnounceAddresses_ComeFirst_ThenConfirmed_ThenListen_EachOnce()
    {
        var peer = KeyPair.FromRandom(new Random(7)).PeerId;
        var announced = new AnnouncedAddresses(
            [Multiaddress.Parse("/dns4/node.example.com/tcp/4001"), Multiaddress.Parse($"/ip4/203.0.113.9/tcp/4001/p2p/{peer}")], () => Machine);
        announced.SetListen([Multiaddress.Parse("/ip4/0.0.0.0/tcp/4001")]);

        Assert.That(announced.SetConfirmed([Multiaddress.Parse("/ip4/198.51.100.20/tcp/4001"), Multiaddress.Parse("/ip4/192.0.2.7/tcp/4001")]), Is.True);
        Assert.That(announced.SetConfirmed([Multiaddress.Parse("/ip4/198.51.100.20/tcp/4001"), Multiaddress.Parse("/ip4/192.0.2.7/tcp/4001")]), Is.False,
            "the same set again is no change");

        Assert.That(announced.All.Select(a => a.ToString()), Is.EqualTo(new[]
        {
            "/dns4/node.example.com/tcp/4001", "/ip4/203.0.113.9/tcp/4001", "/ip4/198.51.100.20/tcp/4001", "/ip4/192.0.2.7/tcp/4001",
            "/ip4/127.0.0.1/tcp/4001",
        }));
    }

    [Test]
    public void AMachineWithManyAddresses_AnnouncesAsManyAsAPeerKeeps_TheOperatorsFirst()
    {
        // A container host: an address on each of many bridges. Identify must still fit what other peers accept.
        IPAddress[] many = [.. Enumerable.Range(1, 60).Select(i => IPAddress.Parse($"10.0.{i}.1")), IPAddress.Loopback];
        var announce = Multiaddress.Parse("/dns4/node.example.com/tcp/4001");
        var announced = new AnnouncedAddresses([announce], () => many);
        announced.SetListen([Multiaddress.Parse("/ip4/0.0.0.0/tcp/4001")]);

        Assert.That(announced.All, Has.Count.EqualTo(AnnouncedAddresses.MaxCount));
        Assert.That(announced.All[0], Is.EqualTo(announce));
        Assert.That(announced.All, Has.None.Matches<Multiaddress>(a => a.ToString().StartsWith("/ip4/127.", StringComparison.Ordinal)), "loopback, last, is left out first");
        var identify = new P2PInference.Facilities.Net.Protocols.Identify.IdentifyInfo(KeyPair.FromRandom(new Random(3)).PublicKey, announced.All,
            [.. Enumerable.Range(0, 12).Select(i => $"/p2pinference/protocol-{i}/1.0.0")], null, "ipfs/0.1.0", "p2pinference/1.0.0");
        Assert.DoesNotThrowAsync(() => P2PInference.Facilities.Net.Protocols.Identify.IdentifyProtocol.WriteAsync(new MemoryStream(), identify, CancellationToken.None),
            "the message stays under the size other implementations accept");
    }

    [Test]
    public void TheMachinesAddresses_IncludeLoopback_Last_AndNoLinkLocal()
    {
        var addresses = AnnouncedAddresses.OfThisMachine();

        Assert.That(addresses, Does.Contain(IPAddress.Loopback));
        Assert.That(addresses.SkipWhile(ip => !IPAddress.IsLoopback(ip)), Has.All.Matches<IPAddress>(IPAddress.IsLoopback));
        Assert.That(addresses, Has.None.Matches<IPAddress>(ip => ip.IsIPv6LinkLocal));
    }

    [Test]
    public void AHost_TellsPeersItsAnnounceAddressesFirst_AndTakesBackConfirmedOnes_ByPush() => SimulationTest.Run(async sim =>
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        var announce = Multiaddress.Parse("/dns4/node.example.com/tcp/4001");
        await using var a = await StartAsync(sim, network, "a", [announce]);
        await using var b = await StartAsync(sim, network, "b", []);
        var connection = await b.ConnectAsync(a.AdvertisedAddresses[^1], CancellationToken.None);

        var told = await b.IdentifyAsync(connection, CancellationToken.None);
        Assert.That(told.ListenAddresses, Is.EqualTo(new[] { announce, InMemoryNetwork.AddressOf("a") }));
        Assert.That(a.AdvertisedAddresses[0], Is.EqualTo(announce.WithPeerId(a.PeerId)));

        var mapping = Multiaddress.Parse("/ip4/198.51.100.20/tcp/4001");
        a.SetConfirmedAddresses([mapping]);
        await sim.Clock.WaitUntilAsync(() => b.PeerStore.GetAddresses(a.PeerId).Contains(mapping), TimeSpan.FromSeconds(30));
        a.SetConfirmedAddresses([]);
        await sim.Clock.WaitUntilAsync(() => !b.PeerStore.GetAddresses(a.PeerId).Contains(mapping), TimeSpan.FromSeconds(30));
        Assert.That(a.IdentifyPushRounds, Is.EqualTo(2));
    });

    [TestCase("/ip4/203.0.113.9/tcp/4001/p2p/{other}", "names another peer")]
    [TestCase("/ip4/0.0.0.0/tcp/4001", "is not an address peers can dial")]
    [TestCase("/ip6/::/tcp/4001", "is not an address peers can dial")]
    public void AnAnnounceAddressPeersCannotUse_IsRefused(string announce, string reason)
    {
        var other = KeyPair.FromRandom(new Random(1)).PeerId;
        var error = Assert.Throws<ArgumentException>(() => new P2PHost(new HostOptions
        {
            Identity = KeyPair.FromRandom(new Random(2)),
            Transports = [new InMemoryNetwork(new Microsoft.Extensions.Time.Testing.FakeTimeProvider()).CreateTransport("a")],
            AnnounceAddresses = [Multiaddress.Parse(announce.Replace("{other}", other.ToString(), StringComparison.Ordinal))],
        }));
        Assert.That(error!.Message, Does.Contain(reason));
    }

    [Test]
    public void ReadingTheMachinesAddressesAgain_ChangesTheAnnouncedOnes_OnlyWhenTheyMoved()
    {
        IReadOnlyList<IPAddress> machine = [IPAddress.Parse("192.0.2.7"), IPAddress.Loopback];
        var announced = new AnnouncedAddresses([], () => machine);
        Assert.That(announced.SetListen([Multiaddress.Parse("/ip4/0.0.0.0/tcp/4001")]), Is.True);

        Assert.That(announced.RefreshMachineAddresses(), Is.False, "the same addresses");
        machine = [IPAddress.Parse("203.0.113.5"), IPAddress.Loopback];
        Assert.That(announced.RefreshMachineAddresses(), Is.True);

        Assert.That(announced.All.Select(a => a.ToString()), Is.EqualTo(new[] { "/ip4/203.0.113.5/tcp/4001", "/ip4/127.0.0.1/tcp/4001" }));
    }

    [Test]
    public void AHostOn0000_TellsPeersItsNewAddresses_OnceTheMachinesAddressesSettle() => SimulationTest.Run(async sim =>
    {
        // A laptop that moves to another network: the operating system reports the change as a burst of events.
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        IReadOnlyList<IPAddress> machine = [IPAddress.Parse("192.0.2.7"), IPAddress.Loopback];
        Action? notify = null;
        var unsubscribed = false;
        await using var a = await StartAsync(sim, network, "a", [], () => machine, changed =>
        {
            notify = changed;
            return new Unsubscribe(() => unsubscribed = true);
        });
        await using var b = await StartAsync(sim, network, "b", []);
        Assert.That(notify, Is.Null, "a host without a listener on 0.0.0.0 or :: does not watch the machine");
        await a.StartAsync([Multiaddress.Parse("/ip4/0.0.0.0/tcp/4001")], CancellationToken.None);
        Assert.That(notify, Is.Not.Null);
        var before = Multiaddress.Parse("/ip4/192.0.2.7/tcp/4001");
        var after = Multiaddress.Parse("/ip4/203.0.113.5/tcp/4001");
        await b.ConnectAsync(a.AdvertisedAddresses.First(x => x.ToString().StartsWith("/memory/", StringComparison.Ordinal)), CancellationToken.None);
        await sim.Clock.WaitUntilAsync(() => b.PeerStore.GetAddresses(a.PeerId).Contains(before), TimeSpan.FromSeconds(30));
        var raised = 0;
        a.AnnouncedAddressesChanged += () => raised++;

        machine = [IPAddress.Parse("203.0.113.5"), IPAddress.Loopback];
        notify!();
        notify();
        await sim.Clock.AdvanceAsync(MachineAddressWatch.Settle / 2);
        notify();
        await sim.Clock.AdvanceAsync(MachineAddressWatch.Settle / 2);
        Assert.That(a.AnnouncedAddresses, Does.Contain(before), "still settling: the last event came half a second ago");
        await sim.Clock.AdvanceAsync(MachineAddressWatch.Settle / 2);

        Assert.That(a.AnnouncedAddresses, Does.Contain(after).And.Not.Contain(before));
        Assert.That(raised, Is.EqualTo(1), "one change announced for the burst");
        await sim.Clock.WaitUntilAsync(() => b.PeerStore.GetAddresses(a.PeerId).Contains(after) && !b.PeerStore.GetAddresses(a.PeerId).Contains(before),
            TimeSpan.FromSeconds(30));

        await a.DisposeAsync();
        Assert.That(unsubscribed, Is.True, "the host stops watching when disposed");
    });

    private static async Task<P2PHost> StartAsync(SimulationExecutor sim, InMemoryNetwork network, string name, IReadOnlyList<Multiaddress> announce,
        Func<IReadOnlyList<IPAddress>>? machineAddresses = null, Func<Action, IDisposable>? watchMachineAddresses = null)
    {
        var options = sim.HostOptionsFor(network, name);
        return await sim.StartHostAsync(network, name, options with
        {
            Transports = [.. options.Transports, new UnspecifiedListenTransport()],
            AnnounceAddresses = announce,
            MachineAddresses = machineAddresses ?? (() => throw new AssertionException("the machine's addresses are not read in this test")),
            WatchMachineAddresses = watchMachineAddresses ?? (_ => throw new AssertionException("the machine is not watched in this test")),
        });
    }

    private sealed class Unsubscribe(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }

    /// <summary>Listens on 0.0.0.0 or :: and never accepts: peers reach the host over the in-memory network.</summary>
    private sealed class UnspecifiedListenTransport : ITransport
    {
        public bool CanDial(Multiaddress address) => false;

        public bool CanListen(Multiaddress address) => address.HasUnspecifiedHost;

        public ValueTask<RawConnection> DialAsync(Multiaddress address, CancellationToken cancellationToken) => throw new NotSupportedException();

        public ValueTask<ITransportListener> ListenAsync(Multiaddress address, CancellationToken cancellationToken) => new(new Listener(address));

        private sealed class Listener(Multiaddress address) : ITransportListener
        {
            public Multiaddress Address => address;

            public async ValueTask<RawConnection> AcceptAsync(CancellationToken cancellationToken)
            {
                await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
                throw new OperationCanceledException(cancellationToken);
            }

            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }
}
