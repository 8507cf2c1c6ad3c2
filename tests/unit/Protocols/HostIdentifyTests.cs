using System.Runtime.ExceptionServices;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Protocols.Ping;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// A host runs identify once per connection and every <see cref="P2PHost.IdentifyAsync(PeerId, CancellationToken)"/>
/// shares that one exchange: stock libp2p peers reset a second identify stream. The remote's
/// identify handler here is scripted and counts the streams it is asked to serve.
/// </summary>
[TestFixture]
public sealed class HostIdentifyTests
{
    private static readonly TimeSpan IdentifyTimeout = TimeSpan.FromSeconds(7);

    private SimulationExecutor _sim = null!;
    private InMemoryNetwork _network = null!;
    private readonly List<P2PHost> _hosts = [];
    private P2PHost _remote = null!;
    private int _served;
    private TaskCompletionSource _asked = null!;
    private TaskCompletionSource _release = null!;

    /// <summary>What the remote does with an identify stream once asked (and, if held, released).</summary>
    private Func<StreamContext, CancellationToken, Task> _answer = null!;

    /// <summary>Runs <paramref name="test"/> on a simulation with the scripted remote started; the hosts are disposed inside it.</summary>
    private void Run(Func<Task> test) => SimulationTest.Run(async sim =>
    {
        _sim = sim;
        // A run that failed part-way left its hosts behind, on its own dead simulation.
        _hosts.Clear();
        await CreateAsync();
        try
        {
            await test();
        }
        finally
        {
            foreach (var host in _hosts) await host.DisposeAsync();
            _hosts.Clear();
        }
    });

    private async Task CreateAsync()
    {
        _network = new InMemoryNetwork(_sim.Clock, _sim.Seed);
        _served = 0;
        _asked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _release.SetResult();
        _answer = AnswerTruthfullyAsync;
        _remote = await StartAsync("remote", identifyOnConnect: true);
        _remote.Handle(IdentifyProtocol.ProtocolId, async (context, ct) =>
        {
            Interlocked.Increment(ref _served);
            _asked.TrySetResult();
            await _release.Task.WaitOrCancelAsync(ct);
            await _answer(context, ct);
        });
    }

    // The simulation ends a hang (deadlock, virtual time limit); a real-time token would cancel from another thread.
    private static CancellationToken Token => CancellationToken.None;

    private static async Task<T> CatchAsync<T>(Func<Task> action)
        where T : Exception
    {
        try
        {
            await action();
        }
        catch (Exception e)
        {
            Assert.That(e, Is.TypeOf<T>());
            return (T)e;
        }
        throw new AssertionException($"expected {typeof(T).Name}, nothing was thrown");
    }

    private void HoldAnswers() => _release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    private async Task AnswerTruthfullyAsync(StreamContext context, CancellationToken ct)
    {
        var info = new IdentifyInfo(_remote.Identity.PublicKey, _remote.ListenAddresses, [.. _remote.Protocols],
            context.Connection.RemoteAddress, "ipfs/0.1.0", "scripted/1.0");
        await IdentifyProtocol.WriteAsync(context.Stream, info, ct);
        await context.Stream.CompleteWritesAsync(ct);
    }

    private async Task<P2PHost> StartAsync(string name, bool identifyOnConnect)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.FromRandom(_sim.CreateRandom("identity", name)),
            RandomSource = new SeededRandomSource(_sim.CreateRandom("entropy", name)),
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _sim.Clock,
            IdentifyOnConnect = identifyOnConnect,
            IdentifyTimeout = IdentifyTimeout,
        });
        _hosts.Add(host);
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], Token);
        return host;
    }

    private async Task<(P2PHost Local, PeerConnection Connection)> ConnectAsync(bool identifyOnConnect = true)
    {
        var local = await StartAsync("local", identifyOnConnect);
        var connection = await local.ConnectAsync(_remote.AdvertisedAddresses[0], Token);
        return (local, connection);
    }

    [Test]
    public void APeerReachedOnAPublicAddress_CannotPutOurLoopbackOrLanInThePeerStore_ThroughItsListenAddresses() => Run(async () =>
    {
        string[] named = ["/ip4/127.0.0.1/tcp/22", "/dns4/169.254.169.254/tcp/80", "/ip4/192.168.1.5/tcp/4001", "/ip4/198.51.100.7/tcp/4001"];
        _answer = async (context, ct) =>
        {
            var info = new IdentifyInfo(_remote.Identity.PublicKey, [.. _remote.ListenAddresses, .. named.Select(Multiaddress.Parse)],
                [.. _remote.Protocols], context.Connection.RemoteAddress, "ipfs/0.1.0", "scripted/1.0");
            await IdentifyProtocol.WriteAsync(context.Stream, info, ct);
            await context.Stream.CompleteWritesAsync(ct);
        };
        var (local, _) = await ConnectAsync();

        var identified = await local.IdentifyAsync(_remote.PeerId, Token);

        // In-memory addresses count as public, as the one we reached the remote at does.
        Assert.That(local.PeerStore.GetAddresses(_remote.PeerId).Select(a => a.ToString()),
            Is.EquivalentTo(new[] { InMemoryNetwork.AddressOf("remote").ToString(), "/ip4/198.51.100.7/tcp/4001" }));
        Assert.That(identified.ListenAddresses.Select(a => a.ToString()), Is.SupersetOf(named), "the outcome keeps all the peer told");
    });

    [Test]
    public void SecondIdentify_OpensNoNewStream_AndReturnsTheResultOfTheFirst() => Run(async () =>
    {
        var (local, connection) = await ConnectAsync();

        var first = await local.IdentifyAsync(_remote.PeerId, Token);
        var second = await local.IdentifyAsync(_remote.PeerId, Token);

        Assert.That(_served, Is.EqualTo(1));
        Assert.That(second, Is.SameAs(first));
        Assert.That(first.AgentVersion, Is.EqualTo("scripted/1.0"));
        Assert.That(connection.RemoteIdentify, Is.SameAs(first));
        Assert.That(local.PeerStore.GetAgentVersion(_remote.PeerId), Is.EqualTo("scripted/1.0"));
        Assert.That(local.PeerStore.GetProtocols(_remote.PeerId), Does.Contain(PingProtocol.ProtocolId));
    });

    [Test]
    public void CallersArrivingWhileIdentifyRuns_WaitForIt_AndAllGetItsResult() => Run(async () =>
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitOrCancelAsync(Token);

        var a = local.IdentifyAsync(_remote.PeerId, Token);
        var b = local.IdentifyAsync(connection, Token);
        Assert.That(a.IsCompleted || b.IsCompleted, Is.False, "nothing was answered yet");
        Assert.That(connection.RemoteIdentify, Is.Null);
        _release.SetResult();

        Assert.That(await b, Is.SameAs(await a));
        Assert.That(_served, Is.EqualTo(1));
    });

    [Test]
    public void WithoutIdentifyOnConnect_TheFirstCallStartsTheOneExchange() => Run(async () =>
    {
        var (local, connection) = await ConnectAsync(identifyOnConnect: false);
        Assert.That(_served, Is.Zero);

        var results = await Task.WhenAll(local.IdentifyAsync(connection, Token), local.IdentifyAsync(connection, Token));

        Assert.That(results[1], Is.SameAs(results[0]));
        Assert.That(_served, Is.EqualTo(1));
    });

    [Test]
    public void AnswerAboutAnotherPeer_IsAnIdentifyException_ForEveryCaller_AndTheConnectionStaysUsable() => Run(async () =>
    {
        var stranger = KeyPair.FromRandom(_sim.CreateRandom("identity", "stranger"));
        _answer = async (context, ct) =>
        {
            await IdentifyProtocol.WriteAsync(context.Stream, new IdentifyInfo(stranger.PublicKey, [], [], null, "", ""), ct);
            await context.Stream.CompleteWritesAsync(ct);
        };
        var (local, connection) = await ConnectAsync();

        var first = await CatchAsync<IdentifyException>(async () => await local.IdentifyAsync(connection, Token));
        var again = await CatchAsync<IdentifyException>(async () => await local.IdentifyAsync(connection, Token));

        Assert.That(first!.Message, Does.Contain(stranger.PeerId.ToString()));
        Assert.That(again, Is.SameAs(first));
        Assert.That(_served, Is.EqualTo(1));
        Assert.That(connection.RemoteIdentify, Is.Null);
        Assert.That(await local.PingAsync(_remote.PeerId, Token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(local.GetConnection(_remote.PeerId), Is.SameAs(connection));
    });

    [Test]
    public void RemoteResettingTheStream_IsAnIdentifyException() => Run(async () =>
    {
        _answer = (context, _) =>
        {
            context.Stream.Reset();
            return Task.CompletedTask;
        };
        var (local, connection) = await ConnectAsync();

        var failure = await CatchAsync<IdentifyException>(async () => await local.IdentifyAsync(connection, Token));

        Assert.That(failure!.InnerException, Is.InstanceOf<IOException>());
        Assert.That(connection.IsClosed, Is.False);
    });

    [Test]
    public void ConnectionClosingWhileACallerWaits_FailsTheWaiter() => Run(async () =>
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitOrCancelAsync(Token);
        var waiting = local.IdentifyAsync(connection, Token);

        await _remote.DisconnectAsync(local.PeerId);

        await Assert.ThatAsync(async () => await waiting, Throws.InstanceOf<IdentifyException>());
    });

    [Test]
    public void ConnectionClosingWhileIdentifyRuns_ThrowsNothing_UntilACallerAsksForTheResult() => Run(async () =>
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitOrCancelAsync(Token);
        // Everything of this simulation runs on this thread; other tests' exceptions are on theirs.
        var thread = Environment.CurrentManagedThreadId;
        var thrown = 0;
        EventHandler<FirstChanceExceptionEventArgs> count = (_, e) =>
        {
            if (e.Exception is IdentifyException && Environment.CurrentManagedThreadId == thread) thrown++;
        };
        AppDomain.CurrentDomain.FirstChanceException += count;
        try
        {
            await _remote.DisconnectAsync(local.PeerId);
            await _sim.Clock.RunUntilIdleAsync();
            Assert.That(thrown, Is.Zero, "a dial-and-close fails identify on every such connection; nobody asked, so nothing is thrown");

            await Assert.ThatAsync(async () => await local.IdentifyAsync(connection, Token),
                Throws.InstanceOf<IdentifyException>().With.Message.Contains("closed before identify"));
        }
        finally
        {
            AppDomain.CurrentDomain.FirstChanceException -= count;
        }
    });

    [Test]
    public void NoAnswerWithinIdentifyTimeout_IsAnIdentifyException_CausedByATimeout_AndTheConnectionStaysUsable() => Run(async () =>
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitOrCancelAsync(Token);
        var waiting = local.IdentifyAsync(connection, Token);

        await _sim.Clock.AdvanceAsync(IdentifyTimeout);

        var failure = await CatchAsync<IdentifyException>(async () => await waiting);
        Assert.That(failure!.InnerException, Is.InstanceOf<TimeoutException>());
        Assert.That(await local.PingAsync(_remote.PeerId, Token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    });

    [Test]
    public void CancellingOneCaller_StopsOnlyItsWait_NotTheExchange() => Run(async () =>
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitOrCancelAsync(Token);
        using var giveUp = new CancellationTokenSource();
        var impatient = local.IdentifyAsync(connection, giveUp.Token);
        var patient = local.IdentifyAsync(connection, Token);

        giveUp.Cancel();
        await Assert.ThatAsync(async () => await impatient, Throws.InstanceOf<OperationCanceledException>());
        _release.SetResult();

        Assert.That((await patient).AgentVersion, Is.EqualTo("scripted/1.0"));
        Assert.That(_served, Is.EqualTo(1));
    });
}
