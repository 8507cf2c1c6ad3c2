using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Interop;

/// <summary>
/// identify push (<c>/ipfs/id/push/1.0.0</c>) against js-libp2p's stock <c>identifyPush</c> service
/// (<c>@libp2p/identify</c> 4.1.14), both ways, on one open connection: a protocol one side handles after
/// connecting reaches the other without a reconnect.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class JsIdentifyPushInteropTests
{
    private const string Late = "/p2pinference-test/late/1.0.0";

    private CancellationTokenSource _timeout = null!;
    private P2PHost _host = null!;
    private JsPeer? _js;

    private CancellationToken Token => _timeout.Token;

    [SetUp]
    public async Task StartOurNodeAsync()
    {
        _timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        _host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await _host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], Token);
    }

    [TearDown]
    public async Task StopAsync()
    {
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed && _js is not null)
            await TestContext.Out.WriteLineAsync("js-libp2p stderr:\n" + _js.Diagnostics);
        if (_js is not null) await _js.DisposeAsync();
        _js = null;
        await _host.DisposeAsync();
        _timeout.Dispose();
    }

    [Test]
    public async Task JsHandlesAProtocolAfterConnecting_AndPushesIt_ToUs()
    {
        _js = await JsPeer.StartAsync(["--identify-push"], Token);
        var connection = await _host.ConnectAsync(Multiaddress.Parse(_js.Addrs[0]), Token);
        var info = await _host.IdentifyAsync(connection, Token);
        Assert.That(info.Protocols, Does.Contain(IdentifyProtocol.PushProtocolId));
        var pushed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _host.PeerStore.ProtocolsUpdated += peer =>
        {
            if (peer == connection.RemotePeer && _host.PeerStore.GetProtocols(peer).Contains(Late)) pushed.TrySetResult();
        };

        await _js.SendAsync(new { cmd = "echo-server", protocol = Late }, Token);

        await pushed.Task.WaitAsync(Token);
        Assert.That(_host.GetConnection(connection.RemotePeer), Is.SameAs(connection), "learned on the connection already open");
    }

    [Test]
    public async Task WeHandleAProtocolAfterConnecting_AndPushIt_ToJs()
    {
        _js = await JsPeer.StartAsync(["--identify-push"], Token);
        var connection = await _host.ConnectAsync(Multiaddress.Parse(_js.Addrs[0]), Token);
        await _host.IdentifyAsync(connection, Token);
        var identified = await _js.SendAsync(new { cmd = "identify", addr = _host.AdvertisedAddresses[0].ToString() }, Token);
        Assert.That(identified["protocols"]!.AsArray().Select(p => (string?)p), Does.Contain(IdentifyProtocol.PushProtocolId).And.Not.Contain(Late));

        _host.Handle(Late, (_, _) => Task.CompletedTask);

        var told = await _js.SendAsync(new { cmd = "waitPeerProtocol", peerId = _host.PeerId.ToString(), protocol = Late, timeoutMs = 20000 }, Token);
        Assert.That(told["protocols"]!.AsArray().Select(p => (string?)p), Does.Contain(Late));
    }
}
