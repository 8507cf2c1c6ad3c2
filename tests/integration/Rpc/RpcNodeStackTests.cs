using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.TestKit;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Rpc;

/// <summary>
/// What only the real node over a real stack can show: bytes on the RPC protocol that no well-behaved
/// client sends, the connection surviving them, the one shared connection, and the host's idle
/// policy leaving a connection with a call in flight alone. TCP on loopback on real time (real sockets
/// stay out of simulations); the idle-policy test, which needs time to pass, is a simulation.
/// </summary>
[CancelAfter(60_000)]
public sealed class RpcNodeStackTests
{
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly TimeProvider _time = TimeProvider.System;
    private P2PHost _clientHost = null!;
    private P2PHost _serverHost = null!;
    private RpcNode _client = null!;
    private RpcNode _server = null!;

    [SetUp]
    public async Task StartAsync()
    {
        _serverHost = await StartHostAsync(idle: TimeSpan.FromSeconds(10));
        _clientHost = await StartHostAsync(idle: TimeSpan.FromSeconds(10));
        _clientHost.PeerStore.AddAddresses(_serverHost.PeerId, _serverHost.AdvertisedAddresses);
        _server = new RpcNode(_serverHost, new RpcOptions { TimeProvider = _time, MaxConcurrentCallsPerPeer = 20_000 });
        _client = new RpcNode(_clientHost, new RpcOptions { TimeProvider = _time });
        _server.Respond("echo", (request, _) => ValueTask.FromResult<ReadOnlyMemory<byte>>(request.ToArray()));
    }

    [TearDown]
    public async Task StopAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
        foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
        _owned.Clear();
    }

    private async Task<P2PHost> StartHostAsync(TimeSpan idle)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [new TcpTransport()],
            TimeProvider = _time,
            IdleConnectionTimeout = idle,
            MaintenanceInterval = TimeSpan.FromSeconds(1),
            IdentifyOnConnect = false,
            Yamux = new YamuxOptions { MaxInboundStreams = 20_000, MaxAcceptBacklog = 20_000, KeepAliveInterval = null },
        });
        _owned.Add(host);
        await host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], CancellationToken.None);
        return host;
    }

    private async Task<byte[]> EchoAsync(string text) =>
        await _client.RequestAsync(_serverHost.PeerId, "echo", System.Text.Encoding.UTF8.GetBytes(text), null, CancellationToken.None);

    /// <summary>Sends <paramref name="bytes"/> raw on a new RPC stream, half-closes, and reads what the server answers (null: nothing).</summary>
    private async Task<ResponseFrame?> SendRawAsync(byte[] bytes, bool halfClose = true)
    {
        var stream = await _clientHost.OpenStreamAsync(_serverHost.PeerId, RpcNode.ProtocolId, CancellationToken.None);
        await using (stream)
        {
            await stream.WriteAsync(bytes);
            if (halfClose) await stream.CompleteWritesAsync();
            try
            {
                return await RpcFrames.ReadAsync<ResponseFrame>(stream, 1 << 20, CancellationToken.None);
            }
            catch (YamuxStreamResetException)
            {
                return null;
            }
        }
    }

    private static byte[] Framed(RequestEnvelope envelope) => Framed(MessagePackRpcCodec<RequestEnvelope>.Instance.ToByteArray(envelope));

    private static byte[] Framed(byte[] body) => [.. Varint.Encode((ulong)body.Length), .. body];

    private PeerConnection TheConnection() => _clientHost.Connections.Single();

    [Test]
    public async Task Handler_SeesWhereTheCallersConnectionComesFrom()
    {
        Multiaddress? seen = null;
        string? origin = "not seen";
        _server.Respond("where", (_, context) =>
        {
            (seen, origin) = (context.RemoteAddress, context.RemoteOrigin);
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(Array.Empty<byte>());
        });

        await _client.RequestAsync(_serverHost.PeerId, "where", Array.Empty<byte>(), null, CancellationToken.None);

        var connection = _clientHost.GetConnection(_serverHost.PeerId)!;
        Assert.That(seen?.ToString(), Does.StartWith("/ip4/127.0.0.1/tcp/"), "the transport's remote address, for per-address limits");
        Assert.That(seen!.ToString(), Is.Not.EqualTo(connection.RemoteAddress.ToString()), "the caller's end, not the server's");
        Assert.That(origin, Is.Null, "a caller on loopback is counted under no address");
    }

    [Test]
    public async Task Call_ToAPeerThatServesNoRpc_FailsUnavailable_AndTheConnectionKeepsServing()
    {
        // The request leaves with the proposal (lazy negotiation); the bare host refuses the protocol.
        var bare = await StartHostAsync(idle: TimeSpan.FromSeconds(10));
        _clientHost.PeerStore.AddAddresses(bare.PeerId, bare.AdvertisedAddresses);

        var e = Assert.ThrowsAsync<RpcException>(() => _client.RequestAsync(bare.PeerId, "echo", new byte[] { 1, 2, 3 }, null, CancellationToken.None));

        Assert.That(e!.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(e.NotDelivered, Is.True, "refused during protocol negotiation: no handler saw it");
        Assert.That(await _clientHost.PingAsync(bare.PeerId, CancellationToken.None), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(await EchoAsync("still here"), Is.EqualTo("still here"u8.ToArray()));
    }

    [Test]
    public async Task Call_ToANodeThatStoppedServing_OnAnOpenConnection_IsMarkedNotDelivered()
    {
        var calls = 0;
        _server.Respond("count", (_, _) =>
        {
            Interlocked.Increment(ref calls);
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(Array.Empty<byte>());
        });
        await _client.RequestAsync(_serverHost.PeerId, "count", Array.Empty<byte>(), null, CancellationToken.None);
        // Draining: the RPC node stops while its host (and our connection to it) stays up.
        await _server.DisposeAsync();

        var e = Assert.ThrowsAsync<RpcException>(() => _client.RequestAsync(_serverHost.PeerId, "count", Array.Empty<byte>(), null, CancellationToken.None));

        Assert.That(e!.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(e.NotDelivered, Is.True, e.Message);
        Assert.That(calls, Is.EqualTo(1));
        Assert.That(TheConnection().IsClosed, Is.False, "the host kept the connection");
    }

    [Test]
    public async Task Call_ToAnUnreachableAddress_IsMarkedNotDelivered()
    {
        var gone = await StartHostAsync(idle: TimeSpan.FromSeconds(10));
        var addresses = gone.AdvertisedAddresses;
        var peer = gone.PeerId;
        await gone.DisposeAsync();
        _clientHost.PeerStore.AddAddresses(peer, addresses);

        var e = Assert.ThrowsAsync<RpcException>(() => _client.RequestAsync(peer, "echo", new byte[] { 1 }, null, CancellationToken.None));

        Assert.That(e!.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(e.NotDelivered, Is.True, "the dial failed");
    }

    /// <summary>A server that reads the request envelope, then answers with <paramref name="answer"/>'s bytes as they are.</summary>
    private async Task<PeerId> StartHostileServerAsync(Func<byte[]> answer, P2PHost? client = null)
    {
        var hostile = await StartHostAsync(idle: TimeSpan.FromSeconds(10));
        hostile.Handle(RpcNode.ProtocolId, async (context, ct) =>
        {
            _ = await RpcFrames.ReadAsync<RequestEnvelope>(context.Stream, 1 << 20, ct);
            await context.Stream.WriteAsync(answer(), ct);
            await context.Stream.CompleteWritesAsync();
        });
        (client ?? _clientHost).PeerStore.AddAddresses(hostile.PeerId, hostile.AdvertisedAddresses);
        return hostile.PeerId;
    }

    /// <summary>A client node of its own (on a host of its own) whose message limit is 1 KiB.</summary>
    private async Task<(RpcNode Node, P2PHost Host)> LimitedClientAsync()
    {
        var host = await StartHostAsync(idle: TimeSpan.FromSeconds(10));
        var node = new RpcNode(host, new RpcOptions { TimeProvider = _time, MaxMessageSize = 1024 });
        _owned.Add(node);
        return (node, host);
    }

    private static byte[] FramedAnswer(ResponseFrame frame) => Framed(MessagePackRpcCodec<ResponseFrame>.Instance.ToByteArray(frame));

    [Test]
    public async Task ServerAnsweringWithAFrameOfNoKind_IsAnInternalError_AndTheClientKeepsServing()
    {
        var hostile = await StartHostileServerAsync(() => FramedAnswer(new ResponseFrame()));

        var e = Assert.ThrowsAsync<RpcException>(() => _client.RequestAsync(hostile, "echo", new byte[] { 1 }, null, CancellationToken.None));

        Assert.That(e!.Code, Is.EqualTo(RpcStatusCode.Internal));
        Assert.That(e.Message, Does.Contain("broke the RPC protocol"));
        Assert.That(await EchoAsync("still here"), Is.EqualTo("still here"u8.ToArray()));
    }

    [Test]
    public async Task ServerAnsweringWithGarbage_IsAnInternalError()
    {
        var hostile = await StartHostileServerAsync(() => Framed([0xc1, 0xc1, 0xc1]));

        var e = Assert.ThrowsAsync<RpcException>(() => _client.RequestAsync(hostile, "echo", new byte[] { 1 }, null, CancellationToken.None));

        Assert.That(e!.Code, Is.EqualTo(RpcStatusCode.Internal));
    }

    [Test]
    public async Task ServerAnnouncingAFrameLargerThanTheLimit_IsResourceExhausted_BeforeTheBodyIsRead()
    {
        var (limited, host) = await LimitedClientAsync();
        var hostile = await StartHostileServerAsync(() => [.. Varint.Encode(1UL << 40)], host);

        var e = Assert.ThrowsAsync<RpcException>(() => limited.RequestAsync(hostile, "echo", new byte[] { 1 }, null, CancellationToken.None));

        Assert.That(e!.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(e.Message, Does.Contain("exceeds the limit of 1024 bytes"));
    }

    [Test]
    public async Task ServerAnsweringWithAPayloadOverTheLimit_IsResourceExhausted()
    {
        var (limited, host) = await LimitedClientAsync();
        // Within the frame allowance (limit plus framing overhead), but a payload over the limit.
        var hostile = await StartHostileServerAsync(() => FramedAnswer(new ResponseFrame { Payload = new byte[1025] }), host);

        var e = Assert.ThrowsAsync<RpcException>(() => limited.RequestAsync(hostile, "echo", new byte[] { 1 }, null, CancellationToken.None));

        Assert.That(e!.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(e.Message, Does.Contain("response of 1025 bytes"));
    }

    [Test]
    public async Task OversizedRequestFromARawClient_IsAnsweredWithResourceExhausted_OnTheSameConnection()
    {
        Assert.That(await EchoAsync("before"), Is.EqualTo("before"u8.ToArray()));
        var connection = TheConnection();
        var envelope = new RequestEnvelope { Method = "echo", Payload = new byte[RpcOptions.DefaultMaxMessageSize + 1] };

        var answer = await SendRawAsync(Framed(envelope));

        Assert.That(answer?.Error?.Code, Is.EqualTo((int)RpcStatusCode.ResourceExhausted));
        Assert.That(await EchoAsync("after"), Is.EqualTo("after"u8.ToArray()));
        Assert.That(TheConnection(), Is.SameAs(connection));
        Assert.That(connection.IsClosed, Is.False);
    }

    [TestCase(1UL << 32)]
    [TestCase(1UL << 62)]
    [TestCase(ulong.MaxValue >> 1)]
    public async Task HugeLengthPrefix_IsAnsweredWithResourceExhausted_WithoutWaitingForTheBody(ulong announced)
    {
        var prefix = new byte[Varint.GetLength(announced)];
        Varint.Write(prefix, announced);

        var answer = await SendRawAsync(prefix, halfClose: false);

        Assert.That(answer?.Error?.Code, Is.EqualTo((int)RpcStatusCode.ResourceExhausted));
        Assert.That(await EchoAsync("still here"), Is.EqualTo("still here"u8.ToArray()));
    }

    [Test]
    public async Task RequestsPastThePeersInFlightBytes_AreRefusedBeforeTheirBodies_WhileOtherPeersAreServed()
    {
        // Twelve streams each announce a 4 MiB request and send none of it: the peer's 32 MiB budget
        // holds eight, the other four are refused at once, without the server waiting for their bodies.
        var announced = RpcOptions.DefaultMaxMessageSize;
        var perPeer = (int)(RpcOptions.DefaultMaxInFlightBytesPerPeer / announced);
        var prefix = Varint.Encode((ulong)announced);
        var streams = new List<YamuxStream>();
        var answers = new List<Task<ResponseFrame?>>();
        for (var i = 0; i < perPeer + 4; i++)
        {
            var stream = await _clientHost.OpenStreamAsync(_serverHost.PeerId, RpcNode.ProtocolId, CancellationToken.None);
            streams.Add(stream);
            await stream.WriteAsync(prefix);
            answers.Add(RpcFrames.ReadAsync<ResponseFrame>(stream, 1 << 20, CancellationToken.None).AsTask());
        }
        var refused = new List<Task<ResponseFrame?>>();
        while (refused.Count < 4) refused.Add(await Task.WhenAny(answers.Except(refused)));

        var other = await StartHostAsync(idle: TimeSpan.FromSeconds(10));
        other.PeerStore.AddAddresses(_serverHost.PeerId, _serverHost.AdvertisedAddresses);
        await using var otherClient = new RpcNode(other, new RpcOptions { TimeProvider = _time });
        var fromOtherPeer = await otherClient.RequestAsync(_serverHost.PeerId, "echo", new byte[1 << 20], null, CancellationToken.None);
        Assert.Multiple(() =>
        {
            foreach (var answer in refused)
                Assert.That(answer.Result?.Error?.Code, Is.EqualTo((int)RpcStatusCode.ResourceExhausted));
            Assert.That(answers.Count(a => a.IsCompleted), Is.EqualTo(4), "the eight within the budget wait for their bodies");
            Assert.That(fromOtherPeer, Has.Length.EqualTo(1 << 20), "another peer is served meanwhile");
        });
        foreach (var stream in streams) await stream.DisposeAsync();
    }

    [Test]
    public async Task MalformedEnvelope_IsAnsweredWithInvalidArgument()
    {
        var answer = await SendRawAsync([5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);

        Assert.That(answer?.Error?.Code, Is.EqualTo((int)RpcStatusCode.InvalidArgument));
        Assert.That(await EchoAsync("ok"), Is.EqualTo("ok"u8.ToArray()));
    }

    [TestCase(10_000)]
    [TestCase(1_000_000)]
    public async Task DeeplyNestedEnvelope_IsAnsweredWithInvalidArgument_WhileACallInFlightOnTheSamePeerIsServed(int depth)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _server.Respond("slow", async (request, context) =>
        {
            started.TrySetResult();
            await release.Task.WaitAsync(context.CancellationToken);
            return request.ToArray();
        });
        var healthy = _client.RequestAsync(_serverHost.PeerId, "slow", "healthy"u8.ToArray(), null, CancellationToken.None);
        await started.Task;
        var connection = TheConnection();
        // An envelope whose eighth member (one this version does not know) is nested `depth` arrays deep.
        var nested = new byte[depth + 1];
        Array.Fill(nested, (byte)0x91, 0, depth);
        nested[depth] = 0xC0;
        byte[] body = [0x98, 0xA4, .. "echo"u8, 0xC4, 0x00, 0x00, 0xA0, 0xA0, 0x80, 0xC2, .. nested];

        var answer = await SendRawAsync(Framed(body));

        Assert.That(answer?.Error?.Code, Is.EqualTo((int)RpcStatusCode.InvalidArgument));
        Assert.That(answer!.Error!.Message, Does.Contain("nested deeper"));
        Assert.That(healthy.IsCompleted, Is.False);
        release.TrySetResult();
        Assert.That(await healthy, Is.EqualTo("healthy"u8.ToArray()));
        Assert.That(await EchoAsync("after"), Is.EqualTo("after"u8.ToArray()));
        Assert.That(TheConnection(), Is.SameAs(connection));
    }

    [Test]
    public async Task EnvelopeWithoutMethod_IsAnsweredWithInvalidArgument()
    {
        var answer = await SendRawAsync(Framed(new RequestEnvelope { Payload = "x"u8.ToArray() }));

        Assert.That(answer?.Error?.Code, Is.EqualTo((int)RpcStatusCode.InvalidArgument));
    }

    [TestCase(long.MaxValue)]
    [TestCase(4_294_967_295L)]
    public async Task EnvelopeWithATimeoutPastTheMaximum_IsAnsweredWithInvalidArgument_NotDelivered_AndTheServerKeepsServing(long timeoutMs)
    {
        var answer = await SendRawAsync(Framed(new RequestEnvelope { Method = "echo", Payload = "x"u8.ToArray(), TimeoutMs = timeoutMs }));

        Assert.That(answer?.Error?.Code, Is.EqualTo((int)RpcStatusCode.InvalidArgument), "an answer, not a reset stream");
        Assert.That(RpcNode.FromWire(answer!.Error!).NotDelivered, Is.True);
        Assert.That(await EchoAsync("ok"), Is.EqualTo("ok"u8.ToArray()));
    }

    [Test]
    public async Task TruncatedEnvelope_EndsTheCallQuietly_AndTheServerKeepsServing()
    {
        var framed = Framed(new RequestEnvelope { Method = "echo", Payload = "truncated"u8.ToArray() });

        var answer = await SendRawAsync(framed[..^3]);

        Assert.That(answer, Is.Null);
        Assert.That(await EchoAsync("ok"), Is.EqualTo("ok"u8.ToArray()));
    }

    [Test]
    public async Task RandomBytes_GetATypedErrorOrNoAnswer_AndTheConnectionKeepsServing()
    {
        var random = TestSeed.CreateRandom();
        Assert.That(await EchoAsync("first"), Is.EqualTo("first"u8.ToArray()));
        var connection = TheConnection();
        for (var i = 0; i < 30; i++)
        {
            var garbage = new byte[random.Next(1, 300)];
            random.NextBytes(garbage);

            var answer = await SendRawAsync(garbage);

            if (answer is not null)
            {
                Assert.That(answer.Kind, Is.EqualTo(ResponseFrameKind.Error));
                Assert.That((RpcStatusCode)answer.Error!.Code, Is.AnyOf(RpcStatusCode.InvalidArgument, RpcStatusCode.ResourceExhausted, RpcStatusCode.UnknownMethod));
            }
        }
        Assert.That(await EchoAsync("last"), Is.EqualTo("last"u8.ToArray()));
        Assert.That(TheConnection(), Is.SameAs(connection));
    }

    [Test]
    public async Task ClientHalfClosingBeforeTheAnswer_CancelsTheHandler()
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _server.Respond("wait", async (_, context) =>
        {
            using var registration = context.CancellationToken.Register(() => cancelled.TrySetResult());
            started.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, context.CancellationToken);
            return Array.Empty<byte>();
        });
        var stream = await _clientHost.OpenStreamAsync(_serverHost.PeerId, RpcNode.ProtocolId, CancellationToken.None);
        await using (stream)
        {
            await stream.WriteAsync(Framed(new RequestEnvelope { Method = "wait" }));
            await started.Task;
            await stream.CompleteWritesAsync();

            await cancelled.Task;
        }
    }

    [Test]
    public async Task TenThousandConcurrentCalls_ShareOneConnection()
    {
        var calls = Enumerable.Range(0, 10_000).Select(async i =>
        {
            var request = BitConverter.GetBytes(i);
            var response = await _client.RequestAsync(_serverHost.PeerId, "echo", request, null, CancellationToken.None);
            return response.AsSpan().SequenceEqual(request);
        }).ToArray();

        Assert.That(await Task.WhenAll(calls), Has.All.True);
        Assert.That(_clientHost.Connections, Has.Count.EqualTo(1));
    }

    /// <summary>
    /// The idle policy runs on timers and the call on the network, so this one runs as a simulation over
    /// the in-memory network: the 5 minutes pass in virtual time with every timer and what it starts in order.
    /// </summary>
    [Test]
    public void IdleConnectionPolicy_NeverClosesAConnectionWithACallInFlight() => SimulationTest.Run(async sim =>
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        await using var serverHost = await StartSimulatedHostAsync(sim, network, "server");
        await using var clientHost = await StartSimulatedHostAsync(sim, network, "client");
        clientHost.PeerStore.AddAddresses(serverHost.PeerId, serverHost.AdvertisedAddresses);
        await using var server = new RpcNode(serverHost, new RpcOptions { TimeProvider = sim.Clock, Random = sim.CreateRandom("rpc", "server") });
        await using var client = new RpcNode(clientHost, new RpcOptions { TimeProvider = sim.Clock, Random = sim.CreateRandom("rpc", "client") });
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.Respond("long", async (_, context) =>
        {
            started.TrySetResult();
            await release.Task.WaitOrCancelAsync(context.CancellationToken);
            return "done"u8.ToArray();
        });
        var closed = new TaskCompletionSource<PeerConnection>(TaskCreationOptions.RunContinuationsAsynchronously);
        clientHost.PeerDisconnected += c => closed.TrySetResult(c);

        var call = client.RequestAsync(serverHost.PeerId, "long", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);
        await started.Task;
        var connection = clientHost.Connections.Single();
        await sim.Clock.AdvanceAsync(TimeSpan.FromMinutes(5));

        Assert.That(connection.IsClosed, Is.False, "a call was in flight for 5 minutes of a 10 s idle timeout");
        release.TrySetResult();
        Assert.That(await call, Is.EqualTo("done"u8.ToArray()));

        // Once the call is over the connection is idle like any other, and goes.
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(connection.StreamCount, Is.Zero, "the call's stream is gone once it is answered");
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(12));
        Assert.That(closed.Task.IsCompletedSuccessfully, Is.True, "the idle connection was closed");
        Assert.That(await closed.Task, Is.SameAs(connection));
    });

    private static Task<P2PHost> StartSimulatedHostAsync(SimulationExecutor sim, InMemoryNetwork network, string name) =>
        sim.StartHostAsync(network, name, sim.HostOptionsFor(network, name) with
        {
            IdleConnectionTimeout = TimeSpan.FromSeconds(10),
            MaintenanceInterval = TimeSpan.FromSeconds(1),
            IdentifyOnConnect = false,
            Yamux = new YamuxOptions { KeepAliveInterval = null },
        });
}
