using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Tests.Unit.Support;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>
/// A call's timeout has an upper bound, <see cref="RpcCallOptions.MaxTimeout"/> (the longest a timer
/// waits, about 49.7 days): a request envelope asking for more is refused as InvalidArgument, marked
/// not delivered, like the envelope's other checks, and the node goes on serving; a caller asking for
/// more gets the same code before anything is sent, on the real node and on the twin.
/// </summary>
[TestFixture]
public sealed class RpcCallTimeoutLimitTests
{
    private const string Echo = "echo";

    private static readonly long MaxTimeoutMs = (long)RpcCallOptions.MaxTimeout.TotalMilliseconds;

    /// <summary>A real server node and a real client node on the in-memory network; the server echoes and counts its calls.</summary>
    private static async Task<T> OverTheRealStackAsync<T>(SimulationExecutor sim, Func<P2PHost, RpcNode, RpcNode, Func<int>, CancellationToken, Task<T>> body)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(1), sim.Clock);
        var ct = deadline.Token;
        await using var stack = new SimulatedRpcStack(sim);
        var (_, server) = await stack.NodeAsync("server", ct);
        var (clientHost, client) = await stack.NodeAsync("client", ct);
        var calls = 0;
        server.Respond(Echo, (request, _) =>
        {
            calls++;
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(request.ToArray());
        });
        return await body(clientHost, server, client, () => calls, ct);
    }

    /// <summary>Sends <paramref name="envelope"/> raw on a new RPC stream and reads the one answer (null: none, the stream was reset or ended).</summary>
    private static async Task<ResponseFrame?> SendRawAsync(P2PHost from, PeerId to, RequestEnvelope envelope, CancellationToken ct)
    {
        var stream = await from.OpenStreamAsync(to, RpcNode.ProtocolId, ct);
        await using (stream)
        {
            var body = MessagePackRpcCodec<RequestEnvelope>.Instance.ToByteArray(envelope);
            await stream.WriteAsync((byte[])[.. Varint.Encode((ulong)body.Length), .. body], ct);
            try
            {
                return await RpcFrames.ReadAsync<ResponseFrame>(stream, 1 << 20, ct);
            }
            catch (Exception e) when (e is YamuxStreamResetException or IOException)
            {
                return null;
            }
        }
    }

    [TestCase(long.MaxValue)]
    [TestCase(4_294_967_295L)] // one past the longest a timer waits
    public void AnEnvelopeAskingForMoreThanTheMaximum_IsInvalidArgument_NotDelivered_AndTheNodeKeepsServing(long timeoutMs)
    {
        var (answer, calls, after, atTheMaximum) = SimulationTest.Run(sim => OverTheRealStackAsync(sim, async (clientHost, server, client, calls, ct) =>
        {
            var answer = await SendRawAsync(clientHost, server.PeerId, new RequestEnvelope { Method = Echo, Payload = "x"u8.ToArray(), TimeoutMs = timeoutMs }, ct);
            var callsThen = calls();
            var after = await client.RequestAsync(server.PeerId, Echo, "after"u8.ToArray(), null, ct);
            var atTheMaximum = await SendRawAsync(clientHost, server.PeerId, new RequestEnvelope { Method = Echo, Payload = "x"u8.ToArray(), TimeoutMs = MaxTimeoutMs }, ct);
            return (answer, callsThen, after, atTheMaximum);
        }));

        Assert.That(answer, Is.Not.Null, "the refusal is an answer, not a reset stream");
        var error = RpcNode.FromWire(answer!.Error!);
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(error.NotDelivered, Is.True, "refused before any handler ran: the caller may send it elsewhere");
        Assert.That(error.Message, Does.Contain("timeout"));
        Assert.That(calls, Is.Zero);
        Assert.That(after, Is.EqualTo("after"u8.ToArray()));
        Assert.That(atTheMaximum?.Kind, Is.EqualTo(ResponseFrameKind.Payload), "the maximum itself is allowed");
    }

    [Test]
    public void ACallerAskingForMoreThanTheMaximum_IsRefusedBeforeSending_OnTheRealNode()
    {
        var (error, calls) = SimulationTest.Run(sim => OverTheRealStackAsync(sim, async (_, server, client, calls, ct) =>
        {
            RpcException? error = null;
            try
            {
                await client.RequestAsync(server.PeerId, Echo, "x"u8.ToArray(), new RpcCallOptions { Timeout = TimeSpan.FromDays(60) }, ct);
            }
            catch (RpcException e)
            {
                error = e;
            }
            return (error, calls());
        }));

        Assert.That(error?.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(calls, Is.Zero);
    }

    [Test]
    public void ACallerAskingForMoreThanTheMaximum_IsRefusedBeforeSending_OnTheTwin()
    {
        var (error, calls) = SimulationTest.Run(async sim =>
        {
            var network = new InMemoryRpcNetwork(sim.Clock);
            await using var server = network.CreateNode();
            await using var client = network.CreateNode();
            var calls = 0;
            server.Respond(Echo, (request, _) =>
            {
                calls++;
                return ValueTask.FromResult(request);
            });
            RpcException? error = null;
            try
            {
                await client.RequestAsync(server.PeerId, Echo, "x"u8.ToArray(), new RpcCallOptions { Timeout = TimeSpan.FromDays(60) }, CancellationToken.None);
            }
            catch (RpcException e)
            {
                error = e;
            }
            return (error, calls);
        });

        Assert.That(error?.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(calls, Is.Zero);
    }

    [Test]
    public async Task TheServerCore_RefusesATimeoutPastTheMaximum_WhateverCarriedIt()
    {
        var core = new RpcServerCore(new RpcOptions(), Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        var calls = 0;
        core.Respond(Echo, (request, _) =>
        {
            calls++;
            return ValueTask.FromResult(request);
        });
        var caller = KeyPair.FromSeed(new byte[32]).PeerId;
        var call = new RpcInvocation(caller, Echo, "x"u8.ToArray(), RpcCallOptions.MaxTimeout + TimeSpan.FromMilliseconds(1), "r-1", "t-1",
            new Dictionary<string, string>(), Streaming: false, CallerAddress: null, CallerOrigin: null);

        var error = await core.InvokeAsync(call, (_, _, _) => ValueTask.CompletedTask, CancellationToken.None);

        Assert.That(error?.Code, Is.EqualTo(RpcStatusCode.InvalidArgument));
        Assert.That(error!.NotDelivered, Is.True);
        Assert.That(calls, Is.Zero);
    }
}
