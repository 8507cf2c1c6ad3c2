using System.Net;
using System.Net.Sockets;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Interop;

/// <summary>
/// AutoNAT v1 against js-libp2p (<c>@libp2p/autonat</c> 3.0.28 with libp2p 3.3.11), both ways, on
/// loopback. Stock js neither dials back nor asks about private addresses (loopback and the
/// documentation ranges count as private there), so on one machine a stock js server can only
/// refuse; the js side asks ours through the package's own message codec (peer.mjs
/// <c>autonat-dial</c>) and our server, allowed private addresses, dials it back for real.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class JsAutoNatInteropTests
{
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

    private string OurAddress => _host.AdvertisedAddresses[0].ToString();

    [Test]
    public async Task WeAskAStockJsServer_ItAnswers_AndItsRefusalIsNoEvidence()
    {
        _js = await JsPeer.StartAsync(["--autonat"], Token);
        var connection = await _host.ConnectAsync(Multiaddress.Parse(_js.Addrs[0]), Token);
        var info = await _host.IdentifyAsync(connection, Token);
        await using var client = new AutoNatClient(_host);

        var answer = await client.AskAsync(connection.RemotePeer, Token);
        var status = await client.CheckAsync(Token);

        Assert.That(info.Protocols, Does.Contain(AutoNatMessageCodec.ProtocolId));
        Assert.That(answer.Status, Is.EqualTo(AutoNatResponseStatus.DialRefused));
        Assert.That(answer.StatusText, Is.EqualTo("no dialable addresses"), "stock js does not dial private addresses");
        Assert.That(status, Is.EqualTo(NatStatus.Unknown));
    }

    [Test]
    public async Task JsAsksUs_WeDialItBack_AndAnswerOk()
    {
        using var server = new AutoNatServer(_host, new AutoNatServerOptions { AllowPrivateAddresses = true });
        _js = await JsPeer.StartAsync([], Token);
        var jsListen = Multiaddress.Parse(_js.Addrs[0]).WithoutPeerId();

        var answer = await _js.SendAsync(new { cmd = "autonat-dial", addr = OurAddress }, Token);

        Assert.That((string?)answer["status"], Is.EqualTo("OK"), (string?)answer["statusText"]);
        Assert.That(Multiaddress.Parse((string)answer["addr"]!), Is.EqualTo(jsListen));
        Assert.That(server.RequestsAnswered, Is.EqualTo(1));
    }

    [Test]
    public async Task JsAsksUs_ByDefault_LoopbackIsNotDialledBack()
    {
        using var server = new AutoNatServer(_host);
        _js = await JsPeer.StartAsync([], Token);

        var answer = await _js.SendAsync(new { cmd = "autonat-dial", addr = OurAddress }, Token);

        Assert.That((string?)answer["status"], Is.EqualTo("E_DIAL_REFUSED"));
        Assert.That((string?)answer["statusText"], Does.Contain("private address"));
    }

    [Test]
    public async Task JsAsksUs_ToDialAnotherHost_IsRefused()
    {
        using var server = new AutoNatServer(_host, new AutoNatServerOptions { AllowPrivateAddresses = true });
        _js = await JsPeer.StartAsync([], Token);

        var answer = await _js.SendAsync(new { cmd = "autonat-dial", addr = OurAddress, dialAddrs = new[] { "/ip4/203.0.113.7/tcp/4001" } }, Token);

        Assert.That((string?)answer["status"], Is.EqualTo("E_DIAL_REFUSED"));
        Assert.That((string?)answer["statusText"], Does.Contain("observed host"));
    }

    [Test]
    public async Task JsAsksUs_OnAPortNothingListensOn_GetsDialError()
    {
        using var server = new AutoNatServer(_host, new AutoNatServerOptions { AllowPrivateAddresses = true });
        _js = await JsPeer.StartAsync([], Token);
        var closed = new TcpListener(IPAddress.Loopback, 0);
        closed.Start();
        var port = ((IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();

        var answer = await _js.SendAsync(new { cmd = "autonat-dial", addr = OurAddress, dialAddrs = new[] { $"/ip4/127.0.0.1/tcp/{port}" } }, Token);

        Assert.That((string?)answer["status"], Is.EqualTo("E_DIAL_ERROR"));
        Assert.That(Multiaddress.Parse((string)answer["addr"]!), Is.EqualTo(Multiaddress.Parse($"/ip4/127.0.0.1/tcp/{port}")));
    }
}
