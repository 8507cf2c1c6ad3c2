using System.Buffers.Binary;
using System.Text.Json;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Workers.Cli;

namespace P2PInference.Tests.Integration.Interop;

/// <summary>
/// Our stack against js-libp2p 3.x (TCP, Noise, Yamux, identify, ping), in both directions. The js
/// peer runs js-libp2p's stock service configuration (tests/interop-js/peer.mjs).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class JsLibp2pInteropTests
{
    private const string ThroughputProtocol = "/bench/throughput/1.0.0";
    private const string EchoProtocol = "/interop/echo/1.0.0";
    private CancellationTokenSource _timeout = null!;
    private P2PHost _host = null!;
    private JsPeer? _js;

    private CancellationToken Token => _timeout.Token;

    [SetUp]
    public async Task StartOurNodeAsync()
    {
        _timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        _host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        _host.Handle(ThroughputProtocol, async (context, ct) =>
        {
            var buffer = new byte[64 * 1024];
            long total = 0;
            int n;
            while ((n = await context.Stream.ReadAsync(buffer, ct)) > 0) total += n;
            var answer = new byte[8];
            BinaryPrimitives.WriteInt64BigEndian(answer, total);
            await context.Stream.WriteAsync(answer, ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
        _host.Handle(EchoProtocol, async (context, ct) =>
        {
            var message = await LengthPrefixedMessage.ReadAsync(context.Stream, 64 * 1024, ct);
            if (message is null) return;
            await LengthPrefixedMessage.WriteAsync(context.Stream, message, ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
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
    public async Task JsDialsUs_PingSucceeds()
    {
        _js = await JsPeer.StartAsync([], Token);

        var answer = await _js.SendAsync(new { cmd = "ping", addr = OurAddress, count = 3 }, Token);

        Assert.That(answer["rtts"]!.AsArray(), Has.Count.EqualTo(3));
    }

    [Test]
    public async Task JsDialsUs_IdentifyReportsOurKeyProtocolsAndAddresses()
    {
        _js = await JsPeer.StartAsync([], Token);

        var answer = await _js.SendAsync(new { cmd = "identify", addr = OurAddress }, Token);

        Assert.That((string)answer["peerId"]!, Is.EqualTo(_host.PeerId.ToString()));
        Assert.That((string)answer["agentVersion"]!, Does.StartWith("p2pinference/"));
        var protocols = answer["protocols"]!.AsArray().Select(p => (string)p!).ToArray();
        Assert.That(protocols, Does.Contain("/ipfs/id/1.0.0").And.Contain("/ipfs/ping/1.0.0").And.Contain(ThroughputProtocol));
        var addrs = answer["listenAddrs"]!.AsArray().Select(a => Multiaddress.Parse((string)a!).WithoutPeerId()).ToArray();
        Assert.That(addrs, Does.Contain(_host.ListenAddresses[0]));
    }

    [Test]
    public async Task WeDialJs_PingAndIdentifySucceed()
    {
        _js = await JsPeer.StartAsync([], Token);
        var jsAddress = Multiaddress.Parse(_js.Addrs[0]);

        var connection = await _host.ConnectAsync(jsAddress, Token);
        var rtt = await _host.PingAsync(connection.RemotePeer, Token);
        var info = await _host.IdentifyAsync(connection.RemotePeer, Token);

        Assert.That(connection.RemotePeer.ToString(), Is.EqualTo(_js.PeerId));
        Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(info.AgentVersion, Does.Contain("js-libp2p"));
        Assert.That(info.Protocols, Does.Contain("/ipfs/ping/1.0.0").And.Contain("/ipfs/id/1.0.0"));
        Assert.That(info.ListenAddresses, Does.Contain(jsAddress.WithoutPeerId()));
    }

    [Test]
    public async Task WeIdentifyAStockJsNode_TwiceOnOneConnection_BothAnswersComeFromTheOneExchange()
    {
        _js = await JsPeer.StartAsync([], Token);
        var jsAddress = Multiaddress.Parse(_js.Addrs[0]);
        var connection = await _host.ConnectAsync(jsAddress, Token);

        var first = await _host.IdentifyAsync(connection.RemotePeer, Token);
        var second = await _host.IdentifyAsync(connection, Token);

        Assert.That(first.PublicKey.ToPeerId().ToString(), Is.EqualTo(_js.PeerId));
        Assert.That(first.AgentVersion, Does.StartWith("js-libp2p/"));
        Assert.That(second, Is.SameAs(first));
        Assert.That(connection.RemoteIdentify, Is.SameAs(first));
        Assert.That(_host.PeerStore.GetProtocols(connection.RemotePeer), Does.Contain("/ipfs/ping/1.0.0"));
        Assert.That(await _host.PingAsync(connection.RemotePeer, Token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    }

    [Test]
    public async Task IdentifyCommand_OfAStockJsNode_PrintsItsPeerIdAndProtocols()
    {
        _js = await JsPeer.StartAsync([], Token);
        var output = new StringWriter();
        var error = new StringWriter();

        var code = await CliApp.RunAsync(["identify", _js.Addrs[0], "--json"], output, error);

        Assert.That(code, Is.EqualTo(0), error.ToString());
        using var answer = JsonDocument.Parse(output.ToString());
        Assert.That(answer.RootElement.GetProperty("peerId").GetString(), Is.EqualTo(_js.PeerId));
        Assert.That(answer.RootElement.GetProperty("protocols").EnumerateArray().Select(p => p.GetString()),
            Does.Contain("/ipfs/id/1.0.0").And.Contain("/ipfs/ping/1.0.0"));
    }

    [Test]
    public async Task WeDialJs_RequestResponseOnANewStream()
    {
        _js = await JsPeer.StartAsync([], Token);
        await _js.SendAsync(new { cmd = "echo-server", protocol = "/interop/echo/1.0.0" }, Token);
        var connection = await _host.ConnectAsync(Multiaddress.Parse(_js.Addrs[0]), Token);
        var message = "hello from .NET"u8.ToArray();

        var stream = await _host.OpenStreamAsync(connection.RemotePeer, "/interop/echo/1.0.0", Token);
        await LengthPrefixedMessage.WriteAsync(stream, message, Token);
        var echoed = await LengthPrefixedMessage.ReadAsync(stream, 1024, Token);

        Assert.That(echoed, Is.EqualTo(message));
    }

    [Test]
    public async Task WeDialJs_LazyNegotiation_ProposalAndRequestInOneWrite_GetTheEchoAndTheAnswer()
    {
        _js = await JsPeer.StartAsync([], Token);
        await _js.SendAsync(new { cmd = "echo-server", protocol = "/interop/echo/1.0.0" }, Token);
        var connection = await _host.ConnectAsync(Multiaddress.Parse(_js.Addrs[0]), Token);
        var message = "hello from .NET, lazily"u8.ToArray();
        var request = new byte[Varint.GetLength((ulong)message.Length) + message.Length];
        message.CopyTo(request, Varint.Write(request, (ulong)message.Length));

        var stream = await _host.OpenStreamLazyAsync(connection.RemotePeer, "/interop/echo/1.0.0", request, Token);
        await _host.ReadLazyAnswerAsync(stream, "/interop/echo/1.0.0", Token);
        var echoed = await LengthPrefixedMessage.ReadAsync(stream, 1024, Token);

        Assert.That(echoed, Is.EqualTo(message));
    }

    [Test]
    public async Task JsDialsUs_NegotiatesWithOurListener_ThatAnswersHeaderAndProtocolTogether()
    {
        // js-libp2p sends its header and proposal in one write, so our listener finds both waiting
        // and answers in one write too; many calls in a row show it holds for every stream.
        var result = await JsPeer.RunOnceAsync(
            ["bench-client", "--addr", OurAddress, "--mode", "echo", "--concurrency", "4", "--seconds", "1", "--size", "64", "--protocol", EchoProtocol], Token);

        Assert.That((int)result["errors"]!, Is.Zero, (string?)result["firstError"]);
        Assert.That((int)result["calls"]!, Is.GreaterThan(0));
    }

    [Test]
    public async Task JsSendsUs8MiB_ThroughYamuxFlowControl_AndWeCountEveryByte()
    {
        var result = await JsPeer.RunOnceAsync(
            ["bench-client", "--addr", OurAddress, "--mode", "throughput", "--mib", "8"], Token);

        Assert.That((long)result["bytes"]!, Is.EqualTo(8L * 1024 * 1024));
    }

    [Test]
    public async Task JsDialsUs_WithTheWrongPeerIdInTheAddress_IsRefused_AndWeKeepServing()
    {
        _js = await JsPeer.StartAsync([], Token);
        var wrong = _host.ListenAddresses[0].WithPeerId(KeyPair.Generate().PeerId).ToString();

        Assert.That(async () => await _js.SendAsync(new { cmd = "ping", addr = wrong, count = 1 }, Token), Throws.InstanceOf<JsPeerException>());
        var answer = await _js.SendAsync(new { cmd = "ping", addr = OurAddress, count = 1 }, Token);
        Assert.That(answer["rtts"]!.AsArray(), Has.Count.EqualTo(1));
    }
}
