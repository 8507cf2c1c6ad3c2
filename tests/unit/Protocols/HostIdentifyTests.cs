using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Protocols.Ping;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Time;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// A host runs identify once per connection and every <see cref="P2PHost.IdentifyAsync(PeerId, CancellationToken)"/>
/// shares that one exchange: stock libp2p peers reset a second identify stream. The remote's
/// identify handler here is scripted and counts the streams it is asked to serve.
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class HostIdentifyTests
{
    private static readonly TimeSpan IdentifyTimeout = TimeSpan.FromSeconds(7);

    private FakeTimeProvider _time = null!;
    private InMemoryNetwork _network = null!;
    private readonly List<P2PHost> _hosts = [];
    private P2PHost _remote = null!;
    private int _served;
    private TaskCompletionSource _asked = null!;
    private TaskCompletionSource _release = null!;

    /// <summary>What the remote does with an identify stream once asked (and, if held, released).</summary>
    private Func<StreamContext, CancellationToken, Task> _answer = null!;

    [SetUp]
    public async Task CreateAsync()
    {
        _time = new FakeTimeProvider();
        _network = new InMemoryNetwork(_time);
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
            await _release.Task.WaitAsync(ct);
            await _answer(context, ct);
        });
    }

    [TearDown]
    public async Task DisposeAsync()
    {
        foreach (var host in _hosts) await host.DisposeAsync();
        _hosts.Clear();
    }

    private CancellationToken Token => TestContext.CurrentContext.CancellationToken;

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
            Identity = KeyPair.Generate(),
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _time,
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
    public async Task SecondIdentify_OpensNoNewStream_AndReturnsTheResultOfTheFirst()
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
    }

    [Test]
    public async Task CallersArrivingWhileIdentifyRuns_WaitForIt_AndAllGetItsResult()
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitAsync(Token);

        var a = local.IdentifyAsync(_remote.PeerId, Token);
        var b = local.IdentifyAsync(connection, Token);
        Assert.That(a.IsCompleted || b.IsCompleted, Is.False, "nothing was answered yet");
        Assert.That(connection.RemoteIdentify, Is.Null);
        _release.SetResult();

        Assert.That(await b, Is.SameAs(await a));
        Assert.That(_served, Is.EqualTo(1));
    }

    [Test]
    public async Task WithoutIdentifyOnConnect_TheFirstCallStartsTheOneExchange()
    {
        var (local, connection) = await ConnectAsync(identifyOnConnect: false);
        Assert.That(_served, Is.Zero);

        var results = await Task.WhenAll(local.IdentifyAsync(connection, Token), local.IdentifyAsync(connection, Token));

        Assert.That(results[1], Is.SameAs(results[0]));
        Assert.That(_served, Is.EqualTo(1));
    }

    [Test]
    public async Task AnswerAboutAnotherPeer_IsAnIdentifyException_ForEveryCaller_AndTheConnectionStaysUsable()
    {
        var stranger = KeyPair.Generate();
        _answer = async (context, ct) =>
        {
            await IdentifyProtocol.WriteAsync(context.Stream, new IdentifyInfo(stranger.PublicKey, [], [], null, "", ""), ct);
            await context.Stream.CompleteWritesAsync(ct);
        };
        var (local, connection) = await ConnectAsync();

        var first = Assert.ThrowsAsync<IdentifyException>(async () => await local.IdentifyAsync(connection, Token));
        var again = Assert.ThrowsAsync<IdentifyException>(async () => await local.IdentifyAsync(connection, Token));

        Assert.That(first!.Message, Does.Contain(stranger.PeerId.ToString()));
        Assert.That(again, Is.SameAs(first));
        Assert.That(_served, Is.EqualTo(1));
        Assert.That(connection.RemoteIdentify, Is.Null);
        Assert.That(await local.PingAsync(_remote.PeerId, Token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(local.GetConnection(_remote.PeerId), Is.SameAs(connection));
    }

    [Test]
    public async Task RemoteResettingTheStream_IsAnIdentifyException()
    {
        _answer = (context, _) =>
        {
            context.Stream.Reset();
            return Task.CompletedTask;
        };
        var (local, connection) = await ConnectAsync();

        var failure = Assert.ThrowsAsync<IdentifyException>(async () => await local.IdentifyAsync(connection, Token));

        Assert.That(failure!.InnerException, Is.InstanceOf<IOException>());
        Assert.That(connection.IsClosed, Is.False);
    }

    [Test]
    public async Task ConnectionClosingWhileACallerWaits_FailsTheWaiter()
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitAsync(Token);
        var waiting = local.IdentifyAsync(connection, Token);

        await _remote.DisconnectAsync(local.PeerId);

        Assert.That(async () => await waiting, Throws.InstanceOf<IdentifyException>());
    }

    [Test]
    public async Task NoAnswerWithinIdentifyTimeout_IsAnIdentifyException_CausedByATimeout_AndTheConnectionStaysUsable()
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitAsync(Token);
        var waiting = local.IdentifyAsync(connection, Token);

        _time.Advance(IdentifyTimeout);

        var failure = Assert.ThrowsAsync<IdentifyException>(async () => await waiting);
        Assert.That(failure!.InnerException, Is.InstanceOf<TimeoutException>());
        Assert.That(await local.PingAsync(_remote.PeerId, Token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    }

    [Test]
    public async Task CancellingOneCaller_StopsOnlyItsWait_NotTheExchange()
    {
        HoldAnswers();
        var (local, connection) = await ConnectAsync();
        await _asked.Task.WaitAsync(Token);
        using var giveUp = new CancellationTokenSource();
        var impatient = local.IdentifyAsync(connection, giveUp.Token);
        var patient = local.IdentifyAsync(connection, Token);

        await giveUp.CancelAsync();
        Assert.That(async () => await impatient, Throws.InstanceOf<OperationCanceledException>());
        _release.SetResult();

        Assert.That((await patient).AgentVersion, Is.EqualTo("scripted/1.0"));
        Assert.That(_served, Is.EqualTo(1));
    }
}
