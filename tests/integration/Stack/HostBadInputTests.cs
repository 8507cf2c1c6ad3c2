using System.Buffers.Binary;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Protocols.Ping;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit.Network;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Stack;

/// <summary>
/// Hostile bytes at every layer of a node's stack. Each attack comes over its own connection
/// while a healthy peer holds an open stream to the same node; the attack must end only its own
/// stream or connection, and the healthy stream must still echo at the end of every test.
/// </summary>
[TestFixture]
public sealed class HostBadInputTests
{
    private const string EchoProtocol = "/test/echo/1.0.0";
    private InMemoryNetwork _network = null!;
    private P2PHost _server = null!;
    private P2PHost _healthy = null!;
    private YamuxStream _healthyStream = null!;
    private CancellationTokenSource _timeout = null!;
    private Random _random = null!;
    private SimulationExecutor _sim = null!;
    private int _attackers;
    private int _keys;

    private CancellationToken Token => _timeout.Token;

    /// <summary>
    /// Runs <paramref name="attack"/> on a simulation with the server and the healthy peer's open
    /// stream up; unless the attack failed, the healthy stream must still echo afterwards.
    /// </summary>
    private void Run(Func<Task> attack) => SimulationTest.Run(async sim =>
    {
        _sim = sim;
        // Virtual time: a hang runs into it as soon as nothing else is left to run.
        _timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5), sim.Clock);
        _random = sim.CreateRandom("attacks");
        _attackers = 0;
        _network = new InMemoryNetwork(sim.Clock, _random.Next());
        _server = await StartHostAsync("server");
        _healthy = await StartHostAsync("healthy");
        try
        {
            await _healthy.ConnectAsync(_server.AdvertisedAddresses[0], Token);
            _healthyStream = await _healthy.OpenStreamAsync(_server.PeerId, EchoProtocol, Token);
            await AssertHealthyAsync();
            await attack();
            await AssertHealthyAsync();
        }
        finally
        {
            await _healthy.DisposeAsync();
            await _server.DisposeAsync();
            _timeout.Dispose();
        }
    });

    private KeyPair NewKey(string purpose) => KeyPair.FromRandom(_sim.CreateRandom("identity", purpose, (++_keys).ToString(System.Globalization.CultureInfo.InvariantCulture)));

    private async Task AssertHealthyAsync()
    {
        var probe = new byte[16];
        _random.NextBytes(probe);
        await _healthyStream.WriteAsync(probe, Token);
        var echoed = new byte[16];
        await _healthyStream.ReadExactOnContextAsync(echoed, Token);
        Assert.That(echoed, Is.EqualTo(probe), "the healthy peer's open stream still echoes");
    }

    private async Task<P2PHost> StartHostAsync(string name)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = NewKey(name),
            // After NewKey: two hosts of one name get different entropy, as they get different keys.
            RandomSource = new SeededRandomSource(_sim.CreateRandom("entropy", name, _keys.ToString(System.Globalization.CultureInfo.InvariantCulture))),
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _sim.Clock,
        });
        host.Handle(EchoProtocol, async (context, ct) =>
        {
            // Small reads, so each probe is echoed as soon as it arrives.
            var buffer = new byte[16];
            int n;
            while ((n = await context.Stream.ReadAsync(buffer, ct)) > 0) await context.Stream.WriteAsync(buffer.AsMemory(0, n), ct);
        });
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], Token);
        return host;
    }

    private async Task<RawConnection> DialRawAsync() =>
        await _network.CreateTransport($"attacker-{++_attackers}").DialAsync(InMemoryNetwork.AddressOf("server"), Token);

    /// <summary>Multistream and Noise done properly; what follows is up to the test.</summary>
    private async Task<(NoiseSecureStream Secure, KeyPair Key)> UpgradeToNoiseAsync(KeyPair? identity = null)
    {
        var raw = await DialRawAsync();
        await MultistreamSelect.SelectAsync(raw.Stream, [NoiseHandshake.ProtocolId], Token);
        var key = identity ?? NewKey("attacker");
        var secure = await NoiseHandshake.InitiateAsync(raw.Stream, key, _server.PeerId, Token);
        await MultistreamSelect.SelectAsync(secure, ["/yamux/1.0.0"], Token);
        return (secure, key);
    }

    /// <summary>Reads until the server ends the connection; fails the test if it never does.</summary>
    private async Task AssertServerClosesAsync(Stream stream)
    {
        var buffer = new byte[4096];
        try
        {
            while (await stream.ReadAsync(buffer, Token) > 0)
            {
            }
        }
        catch (IOException)
        {
        }
        Assert.That(Token.IsCancellationRequested, Is.False, "the server closed the offending connection");
    }

    private static byte[] Frame(YamuxFrameType type, YamuxFlags flags, uint streamId, uint length, int payloadBytes = 0)
    {
        var frame = new byte[YamuxHeader.Size + payloadBytes];
        new YamuxHeader(type, flags, streamId, length).Write(frame);
        return frame;
    }

    [Test]
    public void Multistream_RandomBytes_CloseOnlyThatConnection([Range(1, 5)] int round) => Run(async () =>
    {
        var raw = await DialRawAsync();
        var garbage = new byte[_random.Next(1, 300)];
        _random.NextBytes(garbage);

        await raw.Stream.WriteAsync(garbage, Token);
        // Garbage that reads as the start of a longer message leaves the server waiting for the rest;
        // its upgrade timeout ends that wait.
        await _sim.Clock.AdvanceAsync(HostOptions.DefaultUpgradeTimeout);

        await AssertServerClosesAsync(raw.Stream);
    });

    [Test]
    public void Upgrade_StalledHandshake_IsClosedAfterTheUpgradeTimeout() => Run(async () =>
    {
        var raw = await DialRawAsync();
        await raw.Stream.WriteAsync(Varint.Encode(19), Token);
        await raw.Stream.WriteAsync("/multistream"u8.ToArray(), Token);

        await _sim.Clock.AdvanceAsync(HostOptions.DefaultUpgradeTimeout - TimeSpan.FromSeconds(1));
        var early = raw.Stream.ReadAsync(new byte[64], Token).AsTask();
        Assert.That(early.IsCompleted && early.Result == 0, Is.False, "still open before the timeout");
        await _sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(2));

        await AssertServerClosesAsync(raw.Stream);
    });

    [Test]
    public void Multistream_LengthPrefixOf2Pow63_ClosesTheConnectionWithoutAllocating() => Run(async () =>
    {
        var raw = await DialRawAsync();
        await raw.Stream.WriteAsync(Varint.Encode(1UL << 63), Token);

        await AssertServerClosesAsync(raw.Stream);
    });

    [Test]
    public void Multistream_UnknownSecurityProtocol_IsAnsweredNa() => Run(async () =>
    {
        var raw = await DialRawAsync();

        await Assert.ThatAsync(async () => await MultistreamSelect.SelectAsync(raw.Stream, ["/tls/1.0.0"], Token),
            Throws.InstanceOf<MultistreamException>().With.Property(nameof(MultistreamException.Reason)).EqualTo(MultistreamFailure.NoProtocolSupported));
    });

    [Test]
    public void Noise_GarbageHandshakeMessage_ClosesTheConnection() => Run(async () =>
    {
        var raw = await DialRawAsync();
        await MultistreamSelect.SelectAsync(raw.Stream, [NoiseHandshake.ProtocolId], Token);
        var frame = new byte[2 + 200];
        BinaryPrimitives.WriteUInt16BigEndian(frame, 200);
        _random.NextBytes(frame.AsSpan(2));

        // A random first message is a valid ephemeral key; the server answers, and our garbage third message fails.
        await raw.Stream.WriteAsync(frame, Token);
        var answer = new byte[4096];
        _ = await raw.Stream.ReadAsync(answer, Token);
        await raw.Stream.WriteAsync(frame, Token);

        await AssertServerClosesAsync(raw.Stream);
    });

    [Test]
    public void Noise_TruncatedHandshakeFrame_ClosesTheConnection() => Run(async () =>
    {
        var raw = await DialRawAsync();
        await MultistreamSelect.SelectAsync(raw.Stream, [NoiseHandshake.ProtocolId], Token);

        await raw.Stream.WriteAsync(new byte[] { 0xFF, 0xFF, 1, 2, 3 }, Token);
        await raw.DisposeAsync();

        Assert.That(_server.Connections.Select(c => c.RemoteAddress.ToString()), Has.None.Contains("attacker"));
    });

    [Test]
    public void Noise_PayloadSignedByAnotherKey_IsRejected_AndNoConnectionIsRecorded() => Run(async () =>
    {
        var raw = await DialRawAsync();
        await MultistreamSelect.SelectAsync(raw.Stream, [NoiseHandshake.ProtocolId], Token);
        var claimed = NewKey("claimed");
        var actualSigner = NewKey("signer");
        using var staticKey = Curve25519KeyPair.Generate();
        using var handshake = new HandshakeState(true, [], staticKey);
        var buffer = new byte[NoiseFraming.MaxFramedSize];

        var length = handshake.WriteMessage([], buffer.AsSpan(NoiseFraming.HeaderSize));
        await NoiseFraming.WriteFrameAsync(raw.Stream, buffer, length, Token);
        length = await NoiseFraming.ReadFrameAsync(raw.Stream, buffer, Token);
        handshake.ReadMessage(buffer.AsSpan(0, length));
        var forged = NoisePayload.CreateSigned(claimed.PublicKey, actualSigner, staticKey.PublicKey);
        length = handshake.WriteMessage(forged, buffer.AsSpan(NoiseFraming.HeaderSize));
        await NoiseFraming.WriteFrameAsync(raw.Stream, buffer, length, Token);

        await AssertServerClosesAsync(raw.Stream);
        Assert.That(_server.GetConnection(claimed.PeerId), Is.Null, "a forged identity never becomes a connection");
    });

    [Test]
    public void Yamux_WindowOverrun_EndsThatSessionWithProtocolError() => Run(async () =>
    {
        var (secure, _) = await UpgradeToNoiseAsync();
        const int overrun = YamuxOptions.DefaultWindowSize + 1024;
        var frame = Frame(YamuxFrameType.Data, YamuxFlags.Syn, 1, overrun, overrun);

        await secure.WriteAsync(frame, Token);

        await AssertServerClosesAsync(secure);
    });

    [Test]
    public void Yamux_MalformedHeader_EndsThatSession() => Run(async () =>
    {
        var (secure, _) = await UpgradeToNoiseAsync();
        var frame = Frame(YamuxFrameType.Data, YamuxFlags.Syn, 1, 0);
        frame[0] = 7; // version

        await secure.WriteAsync(frame, Token);

        await AssertServerClosesAsync(secure);
    });

    [Test]
    public void Yamux_StreamFloodPastTheLimit_ResetsTheExcess_AndKeepsTheConnection() => Run(async () =>
    {
        var (secure, key) = await UpgradeToNoiseAsync();
        const int flood = 1500;
        var limit = new YamuxOptions().MaxInboundStreams;
        var frames = new byte[flood * YamuxHeader.Size];
        for (var i = 0; i < flood; i++)
            new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, (uint)(2 * i + 1), 0).Write(frames.AsSpan(i * YamuxHeader.Size));

        await secure.WriteAsync(frames, Token);
        var resets = 0;
        var header = new byte[YamuxHeader.Size];
        while (resets < flood - limit)
        {
            await secure.ReadExactOnContextAsync(header, Token);
            var h = YamuxHeader.Read(header);
            if (h.Type == YamuxFrameType.Data && h.Length > 0) await secure.ReadExactOnContextAsync(new byte[h.Length], Token);
            if (h.Flags.HasFlag(YamuxFlags.Rst) && h.StreamId % 2 == 1) resets++;
        }

        var connection = _server.GetConnection(key.PeerId);
        Assert.That(connection, Is.Not.Null, "the flooding connection itself stays up");
        Assert.That(connection!.StreamCount, Is.LessThanOrEqualTo(limit + 1), "open streams stay bounded");
    });

    [Test]
    public void Stream_OversizedNegotiationMessage_ResetsOnlyThatStream() => Run(async () =>
    {
        var (secure, key) = await UpgradeToNoiseAsync();
        await using var session = new YamuxSession(secure, isInitiator: true);
        var bad = await session.OpenStreamAsync(Token);

        await bad.WriteAsync(Varint.Encode(5000), Token);
        await bad.WriteAsync(new byte[5000], Token);

        // The server's own multistream header may arrive first; then the stream is reset.
        await Assert.ThatAsync(async () =>
        {
            while (await bad.ReadAsync(new byte[64], Token) > 0)
            {
            }
        }, Throws.InstanceOf<YamuxStreamResetException>());
        var good = await session.OpenStreamAsync(Token);
        Assert.That(await MultistreamSelect.SelectAsync(good, ["/ipfs/ping/1.0.0"], Token), Is.EqualTo("/ipfs/ping/1.0.0"));
        Assert.That(session.IsClosed, Is.False);
        Assert.That(_server.GetConnection(key.PeerId), Is.Not.Null);
    });

    /// <summary>Answers the identify the server starts on every new connection, as a well-behaved peer would.</summary>
    private static async Task AnswerIdentifyAsync(YamuxSession session, KeyPair key)
    {
        var inbound = await session.AcceptStreamAsync(CancellationToken.None);
        await MultistreamSelect.HandleAsync(inbound, [IdentifyProtocol.ProtocolId], CancellationToken.None);
        await IdentifyProtocol.WriteAsync(inbound, new IdentifyInfo(key.PublicKey, [], [PingProtocol.ProtocolId], null, "ipfs/0.1.0", "attacker/1.0"), CancellationToken.None);
        await inbound.CompleteWritesAsync(CancellationToken.None);
    }

    private static async Task AssertResetAsync(YamuxStream stream) =>
        await Assert.ThatAsync(async () =>
        {
            while (await stream.ReadAsync(new byte[64], CancellationToken.None) > 0)
            {
            }
        }, Throws.InstanceOf<YamuxStreamResetException>());

    [Test]
    public void Identify_PeerThatConnectsAndNeverAnswers_LosesItsConnection_AfterTheIdentifyTimeout() => Run(async () =>
    {
        var (secure, key) = await UpgradeToNoiseAsync();
        await using var session = new YamuxSession(secure, isInitiator: true);
        var inbound = await session.AcceptStreamAsync(Token);
        Assert.That(await MultistreamSelect.HandleAsync(inbound, [IdentifyProtocol.ProtocolId], Token), Is.EqualTo(IdentifyProtocol.ProtocolId));

        // ...and nothing more: no answer, no other stream.
        await _sim.Clock.AdvanceAsync(HostOptions.DefaultIdentifyTimeout - TimeSpan.FromSeconds(1));
        Assert.That(_server.GetConnection(key.PeerId), Is.Not.Null, "still connected before the timeout");
        await _sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(1));

        await _sim.Clock.WaitUntilAsync(() => session.IsClosed, TimeSpan.FromSeconds(1));
        Assert.That(_server.GetConnection(key.PeerId), Is.Null, "the stalled peer's slot is free");
    });

    [Test]
    public void Stream_StalledInNegotiation_IsResetAfterTheNegotiationTimeout_AndTheConnectionStays() => Run(async () =>
    {
        var (secure, key) = await UpgradeToNoiseAsync();
        await using var session = new YamuxSession(secure, isInitiator: true);
        await AnswerIdentifyAsync(session, key);
        var stalled = await session.OpenStreamAsync(Token);
        await stalled.WriteAsync(Varint.Encode(19), Token);

        await _sim.Clock.AdvanceAsync(HostOptions.DefaultStreamNegotiationTimeout);

        await AssertResetAsync(stalled);
        var good = await session.OpenStreamAsync(Token);
        Assert.That(await MultistreamSelect.SelectAsync(good, [PingProtocol.ProtocolId], Token), Is.EqualTo(PingProtocol.ProtocolId));
        Assert.That(_server.GetConnection(key.PeerId), Is.Not.Null);
    });

    [Test]
    public void LazyStream_ListenerThatNeverAnswers_TimesOutAfterTheNegotiationTimeout_AndIsReset() => Run(async () =>
    {
        var (secure, key) = await UpgradeToNoiseAsync();
        await using var session = new YamuxSession(secure, isInitiator: true);
        await AnswerIdentifyAsync(session, key);
        var opened = await _server.OpenStreamLazyAsync(key.PeerId, EchoProtocol, new byte[] { 1, 2, 3 }, Token);
        var silent = await session.AcceptStreamAsync(Token);
        var reading = _server.ReadLazyAnswerAsync(opened, EchoProtocol, Token);

        await _sim.Clock.AdvanceAsync(HostOptions.DefaultStreamNegotiationTimeout - TimeSpan.FromSeconds(1));
        Assert.That(reading.IsCompleted, Is.False, "still waiting for the answer before the timeout");
        await _sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(1));

        await Assert.ThatAsync(() => reading,
            Throws.TypeOf<MultistreamException>().With.Property(nameof(MultistreamException.Reason)).EqualTo(MultistreamFailure.TimedOut));
        await AssertResetAsync(silent);
        Assert.That(_server.GetConnection(key.PeerId), Is.Not.Null, "only the stream is given up, not the connection");
    });

    [Test]
    public void Ping_DialerThatStallsInsideAPayload_HasItsStreamResetAfterThePingTimeout() => Run(async () =>
    {
        var (secure, key) = await UpgradeToNoiseAsync();
        await using var session = new YamuxSession(secure, isInitiator: true);
        await AnswerIdentifyAsync(session, key);
        var ping = await session.OpenStreamAsync(Token);
        await MultistreamSelect.SelectAsync(ping, [PingProtocol.ProtocolId], Token);
        var payload = new byte[PingProtocol.PayloadSize];
        _random.NextBytes(payload);
        await ping.WriteAsync(payload, Token);
        var echoed = new byte[PingProtocol.PayloadSize];
        await ping.ReadExactOnContextAsync(echoed, Token);
        Assert.That(echoed, Is.EqualTo(payload), "a ping inside the timeout is answered");

        await ping.WriteAsync(payload.AsMemory(0, 5), Token);
        await _sim.Clock.AdvanceAsync(HostOptions.DefaultPingTimeout);

        await AssertResetAsync(ping);
        Assert.That(_server.GetConnection(key.PeerId)!.StreamCount, Is.Zero, "the stalled ping no longer holds the connection open");
    });

    [Test]
    public void OnePeerConnectingManyTimes_IsCutAtThePerPeerCap() => Run(async () =>
    {
        var key = NewKey("repeat");
        var sessions = new List<YamuxSession>();
        try
        {
            // Each from its own address, so only the per-peer cap applies; each holds a ping stream
            // open, so the server closes none of the duplicates as idle.
            for (var i = 0; i < 6; i++)
            {
                var (secure, _) = await UpgradeToNoiseAsync(key);
                var session = new YamuxSession(secure, isInitiator: true);
                sessions.Add(session);
                await _sim.Clock.RunUntilIdleAsync();
                try
                {
                    var ping = await session.OpenStreamAsync(Token);
                    await MultistreamSelect.SelectAsync(ping, [PingProtocol.ProtocolId], Token);
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or MultistreamException)
                {
                    // The server closed this one.
                }
            }

            // Duplicates without a stream are retired at once; the cap bounds the ones that hold streams.
            Assert.That(_server.Connections.Count(c => c.RemotePeer == key.PeerId),
                Is.LessThanOrEqualTo(new HostOptions { Identity = key, Transports = [] }.MaxConnectionsPerPeer));
            Assert.That(sessions.Skip(4).Select(s => s.IsClosed), Is.All.True, "connections past the cap are closed");
            Assert.That(sessions[0].IsClosed, Is.False, "the peer's first connection is kept");
        }
        finally
        {
            foreach (var session in sessions) await session.DisposeAsync();
        }
    });

    [Test]
    public void Identify_GarbageAnswerFromARemote_IsIgnored_AndTheConnectionStays() => Run(async () =>
    {
        var (secure, key) = await UpgradeToNoiseAsync();
        await using var session = new YamuxSession(secure, isInitiator: true);

        // The server identifies every new peer; answer it with a length prefix of 2^40.
        var inbound = await session.AcceptStreamAsync(Token);
        Assert.That(await MultistreamSelect.HandleAsync(inbound, [IdentifyProtocol.ProtocolId], Token), Is.EqualTo(IdentifyProtocol.ProtocolId));
        await inbound.WriteAsync(Varint.Encode(1UL << 40), Token);
        await inbound.CompleteWritesAsync(Token);

        var ping = await session.OpenStreamAsync(Token);
        await MultistreamSelect.SelectAsync(ping, ["/ipfs/ping/1.0.0"], Token);
        var payload = new byte[32];
        _random.NextBytes(payload);
        await ping.WriteAsync(payload, Token);
        var echoed = new byte[32];
        await ping.ReadExactOnContextAsync(echoed, Token);
        Assert.That(echoed, Is.EqualTo(payload), "the server still answers us after our bad identify");
        Assert.That(_server.PeerStore.GetAgentVersion(key.PeerId), Is.Null, "nothing from the garbage was recorded");
    });
}
