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
public sealed class JsIdentifyPushInteropTests : JsInteropFixture
{
    private const string Late = "/p2pinference-test/late/1.0.0";

    private async Task<P2PHost> StartOurNodeAsync()
    {
        var host = Own(new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] }));
        await host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], Token);
        return host;
    }

    [Test]
    public async Task JsHandlesAProtocolAfterConnecting_AndPushesIt_ToUs()
    {
        var host = await StartOurNodeAsync();
        var js = await StartJsAsync("--identify-push");
        var connection = await host.ConnectAsync(Multiaddress.Parse(js.Addrs[0]), Token);
        var info = await host.IdentifyAsync(connection, Token);
        Assert.That(info.Protocols, Does.Contain(IdentifyProtocol.PushProtocolId));
        var pushed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.PeerStore.ProtocolsUpdated += peer =>
        {
            if (peer == connection.RemotePeer && host.PeerStore.GetProtocols(peer).Contains(Late)) pushed.TrySetResult();
        };

        await js.SendAsync(new { cmd = "echo-server", protocol = Late }, Token);

        await pushed.Task.WaitAsync(Token);
        Assert.That(host.GetConnection(connection.RemotePeer), Is.SameAs(connection), "learned on the connection already open");
    }

    [Test]
    public async Task WeHandleAProtocolAfterConnecting_AndPushIt_ToJs()
    {
        var host = await StartOurNodeAsync();
        var js = await StartJsAsync("--identify-push");
        var connection = await host.ConnectAsync(Multiaddress.Parse(js.Addrs[0]), Token);
        await host.IdentifyAsync(connection, Token);
        var identified = await js.SendAsync(new { cmd = "identify", addr = host.AdvertisedAddresses[0].ToString() }, Token);
        Assert.That(identified["protocols"]!.AsArray().Select(p => (string?)p), Does.Contain(IdentifyProtocol.PushProtocolId).And.Not.Contain(Late));

        host.Handle(Late, (_, _) => Task.CompletedTask);

        var told = await js.SendAsync(new { cmd = "waitPeerProtocol", peerId = host.PeerId.ToString(), protocol = Late, timeoutMs = 20000 }, Token);
        Assert.That(told["protocols"]!.AsArray().Select(p => (string?)p), Does.Contain(Late));
    }
}
