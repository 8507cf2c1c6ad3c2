using NUnit.Framework;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;

namespace P2PInference.Tests.Integration.Rpc;

/// <summary>The RPC suite on real sockets: TCP on loopback, so on real threads with a manual clock, not in a simulation.</summary>
public sealed class TcpRpcConformanceTests : StackRpcConformanceTests
{
    protected override bool Simulated => false;

    protected override ITransport CreateTransport(string nodeName) => new TcpTransport();

    protected override Multiaddress ListenAddress(string nodeName) => Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");

    /// <summary>
    /// The suite's clock jump waits for an identify answer still on its way: without that, the jump
    /// fired the provider's identify timeout and it closed the connection under the client's next call
    /// (once in about fifty runs of the suite, when the answer came after the client's calls).
    /// </summary>
    [Test]
    public Task ClockJump_WhileAnIdentifyAnswerIsOnItsWay_LeavesTheConnectionOpenForTheNextCall() => RunTestAsync(async () =>
    {
        var provider = await NodeAsync("provider");
        var client = await NodeAsync("client");
        provider.Server.Respond("who", (_, _) => Answer("provider"));
        var clientHost = HostOf(client);
        var release = NewSignal();
        // The client answers the provider's identify only when released, as a thread scheduled late would.
        clientHost.Handle(IdentifyProtocol.ProtocolId, async (context, ct) =>
        {
            await release.Task.WaitOrCancelAsync(ct);
            var info = new IdentifyInfo(clientHost.Identity.PublicKey, clientHost.ListenAddresses, [RpcNode.ProtocolId],
                context.Connection.RemoteAddress, "ipfs/0.1.0", "test");
            await IdentifyProtocol.WriteAsync(context.Stream, info, ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
        Assert.That(Text(await CallAsync(client, provider, "who", "")), Is.EqualTo("provider"));

        var jump = AdvanceAsync(TimeSpan.FromSeconds(30));
        var jumpedBeforeTheAnswer = jump.IsCompleted;
        release.SetResult();
        await jump;

        Assert.That(jumpedBeforeTheAnswer, Is.False, "the clock moved while the identify answer was on its way");
        Assert.That(Text(await CallAsync(client, provider, "who", "")), Is.EqualTo("provider"));
        Assert.That(HostOf(provider).Connections, Has.Count.EqualTo(1), "the provider kept the client's connection");
    });
}
