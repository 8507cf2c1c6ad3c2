using System.Buffers.Binary;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Time;

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
    private FakeTimeProvider _time = null!;
    private int _attackers;

    private CancellationToken Token => _timeout.Token;

    [SetUp]
    public async Task StartServerAndHealthyPeerAsync()
    {
        _timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        _random = TestSeed.CreateRandom();
        _time = new FakeTimeProvider();
        _network = new InMemoryNetwork(seed: _random.Next());
        _server = await StartHostAsync("server");
        _healthy = await StartHostAsync("healthy");
        await _healthy.ConnectAsync(_server.AdvertisedAddresses[0], Token);
        _healthyStream = await _healthy.OpenStreamAsync(_server.PeerId, EchoProtocol, Token);
        await AssertHealthyAsync();
    }

    [TearDown]
    public async Task CheckHealthyPeerAndStopAsync()
    {
        try
        {
            if (TestContext.CurrentContext.Result.Outcome.Status != NUnit.Framework.Interfaces.TestStatus.Failed)
                await AssertHealthyAsync();
        }
        finally
        {
            await _healthy.DisposeAsync();
            await _server.DisposeAsync();
            _timeout.Dispose();
        }
    }

    private async Task AssertHealthyAsync()
    {
        var probe = new byte[16];
        _random.NextBytes(probe);
        await _healthyStream.WriteAsync(probe, Token);
        var echoed = new byte[16];
        await _healthyStream.ReadExactlyAsync(echoed, Token);
        Assert.That(echoed, Is.EqualTo(probe), "the healthy peer's open stream still echoes");
    }

    private async Task<P2PHost> StartHostAsync(string name)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _time,
        });
        host.Handle(EchoProtocol, async (context, ct) => await context.Stream.CopyToAsync(context.Stream, 16, ct));
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], Token);
        return host;
    }

    private async Task<RawConnection> DialRawAsync() =>
        await _network.CreateTransport($"attacker-{++_attackers}").DialAsync(InMemoryNetwork.AddressOf("server"), Token);

    /// <summary>Multistream and Noise done properly; what follows is up to the test.</summary>
    private async Task<(NoiseSecureStream Secure, KeyPair Key)> UpgradeToNoiseAsync()
    {
        var raw = await DialRawAsync();
        await MultistreamSelect.SelectAsync(raw.Stream, [NoiseHandshake.ProtocolId], Token);
        var key = KeyPair.Generate();
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
    public async Task Multistream_RandomBytes_CloseOnlyThatConnection([Range(1, 5)] int round)
    {
        var raw = await DialRawAsync();
        var garbage = new byte[_random.Next(1, 300)];
        _random.NextBytes(garbage);

        await raw.Stream.WriteAsync(garbage, Token);
        // Garbage that reads as the start of a longer message leaves the server waiting for the rest;
        // its upgrade timeout ends that wait.
        await _time.AdvanceAsync(HostOptions.DefaultUpgradeTimeout, Token);

        await AssertServerClosesAsync(raw.Stream);
    }

    [Test]
    public async Task Upgrade_StalledHandshake_IsClosedAfterTheUpgradeTimeout()
    {
        var raw = await DialRawAsync();
        await raw.Stream.WriteAsync(Varint.Encode(19), Token);
        await raw.Stream.WriteAsync("/multistream"u8.ToArray(), Token);

        await _time.AdvanceAsync(HostOptions.DefaultUpgradeTimeout - TimeSpan.FromSeconds(1), Token);
        var early = raw.Stream.ReadAsync(new byte[64], Token).AsTask();
        Assert.That(early.IsCompleted && early.Result == 0, Is.False, "still open before the timeout");
        await _time.AdvanceAsync(TimeSpan.FromSeconds(2), Token);

        await AssertServerClosesAsync(raw.Stream);
    }

    [Test]
    public async Task Multistream_LengthPrefixOf2Pow63_ClosesTheConnectionWithoutAllocating()
    {
        var raw = await DialRawAsync();
        await raw.Stream.WriteAsync(Varint.Encode(1UL << 63), Token);

        await AssertServerClosesAsync(raw.Stream);
    }

    [Test]
    public async Task Multistream_UnknownSecurityProtocol_IsAnsweredNa()
    {
        var raw = await DialRawAsync();

        Assert.That(async () => await MultistreamSelect.SelectAsync(raw.Stream, ["/tls/1.0.0"], Token),
            Throws.InstanceOf<MultistreamException>().With.Property(nameof(MultistreamException.Reason)).EqualTo(MultistreamFailure.NoProtocolSupported));
    }

    [Test]
    public async Task Noise_GarbageHandshakeMessage_ClosesTheConnection()
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
    }

    [Test]
    public async Task Noise_TruncatedHandshakeFrame_ClosesTheConnection()
    {
        var raw = await DialRawAsync();
        await MultistreamSelect.SelectAsync(raw.Stream, [NoiseHandshake.ProtocolId], Token);

        await raw.Stream.WriteAsync(new byte[] { 0xFF, 0xFF, 1, 2, 3 }, Token);
        await raw.DisposeAsync();

        Assert.That(_server.Connections.Select(c => c.RemoteAddress.ToString()), Has.None.Contains("attacker"));
    }

    [Test]
    public async Task Noise_PayloadSignedByAnotherKey_IsRejected_AndNoConnectionIsRecorded()
    {
        var raw = await DialRawAsync();
        await MultistreamSelect.SelectAsync(raw.Stream, [NoiseHandshake.ProtocolId], Token);
        var claimed = KeyPair.Generate();
        var actualSigner = KeyPair.Generate();
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
    }

    [Test]
    public async Task Yamux_WindowOverrun_EndsThatSessionWithProtocolError()
    {
        var (secure, _) = await UpgradeToNoiseAsync();
        const int overrun = YamuxOptions.DefaultWindowSize + 1024;
        var frame = Frame(YamuxFrameType.Data, YamuxFlags.Syn, 1, overrun, overrun);

        await secure.WriteAsync(frame, Token);

        await AssertServerClosesAsync(secure);
    }

    [Test]
    public async Task Yamux_MalformedHeader_EndsThatSession()
    {
        var (secure, _) = await UpgradeToNoiseAsync();
        var frame = Frame(YamuxFrameType.Data, YamuxFlags.Syn, 1, 0);
        frame[0] = 7; // version

        await secure.WriteAsync(frame, Token);

        await AssertServerClosesAsync(secure);
    }

    [Test]
    public async Task Yamux_StreamFloodPastTheLimit_ResetsTheExcess_AndKeepsTheConnection()
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
            await secure.ReadExactlyAsync(header, Token);
            var h = YamuxHeader.Read(header);
            if (h.Type == YamuxFrameType.Data && h.Length > 0) await secure.ReadExactlyAsync(new byte[h.Length], Token);
            if (h.Flags.HasFlag(YamuxFlags.Rst) && h.StreamId % 2 == 1) resets++;
        }

        var connection = _server.GetConnection(key.PeerId);
        Assert.That(connection, Is.Not.Null, "the flooding connection itself stays up");
        Assert.That(connection!.StreamCount, Is.LessThanOrEqualTo(limit + 1), "open streams stay bounded");
    }

    [Test]
    public async Task Stream_OversizedNegotiationMessage_ResetsOnlyThatStream()
    {
        var (secure, key) = await UpgradeToNoiseAsync();
        await using var session = new YamuxSession(secure, isInitiator: true);
        var bad = await session.OpenStreamAsync(Token);

        await bad.WriteAsync(Varint.Encode(5000), Token);
        await bad.WriteAsync(new byte[5000], Token);

        // The server's own multistream header may arrive first; then the stream is reset.
        Assert.That(async () =>
        {
            while (await bad.ReadAsync(new byte[64], Token) > 0)
            {
            }
        }, Throws.InstanceOf<YamuxStreamResetException>());
        var good = await session.OpenStreamAsync(Token);
        Assert.That(await MultistreamSelect.SelectAsync(good, ["/ipfs/ping/1.0.0"], Token), Is.EqualTo("/ipfs/ping/1.0.0"));
        Assert.That(session.IsClosed, Is.False);
        Assert.That(_server.GetConnection(key.PeerId), Is.Not.Null);
    }

    [Test]
    public async Task Identify_GarbageAnswerFromARemote_IsIgnored_AndTheConnectionStays()
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
        await ping.ReadExactlyAsync(echoed, Token);
        Assert.That(echoed, Is.EqualTo(payload), "the server still answers us after our bad identify");
        Assert.That(_server.PeerStore.GetAgentVersion(key.PeerId), Is.Null, "nothing from the garbage was recorded");
    }
}
