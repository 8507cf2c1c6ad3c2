using System.Security.Cryptography;
using NUnit.Framework;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.TestKit.Conformance;

/// <summary>
/// The behaviour every transport must give the full stack (multistream, Noise, Yamux, host):
/// derive a fixture, say how to make a transport and a listen address, and the whole suite runs on
/// it. This repository runs it over TCP loopback and over the in-memory network, plain, sliced and
/// with latency; another project can run it over its own <see cref="ITransport"/>. Each test body
/// goes through <see cref="RunAsync"/>: a transport on virtual time overrides it to run the body on
/// the simulation executor (and <see cref="TimeProvider"/>, <see cref="CreateIdentity"/>,
/// <see cref="CreateRandomSource"/> and <see cref="CreateRandom"/> to draw from the simulation), so
/// the suite replays from one seed.
/// </summary>
[TestFixture]
public abstract class HostStackConformanceTests
{
    protected const string EchoProtocol = "/conformance/echo/1.0.0";
    protected const string SinkProtocol = "/conformance/sink/1.0.0";

    private readonly List<P2PHost> _hosts = [];
    private CancellationTokenSource _testTimeout = null!;

    /// <summary>A transport for the node called <paramref name="nodeName"/>.</summary>
    protected abstract ITransport CreateTransport(string nodeName);

    /// <summary>Where the node called <paramref name="nodeName"/> listens.</summary>
    protected abstract Multiaddress ListenAddress(string nodeName);

    protected virtual TimeProvider TimeProvider => TimeProvider.System;

    /// <summary>Size of the flow-controlled bulk transfer; slow transports may lower it.</summary>
    protected virtual int LargeTransferBytes => 64 * 1024 * 1024;

    protected virtual int ConcurrentStreams => 1000;

    /// <summary>Guards against hangs only, on <see cref="TimeProvider"/>; no test waits for it to pass.</summary>
    protected CancellationToken TestToken => _testTimeout.Token;

    /// <summary>
    /// Runs one test body. The default runs it here, on <see cref="TimeProvider"/>; a fixture on
    /// virtual time runs <see cref="RunWithHostsAsync"/> inside its simulation instead.
    /// </summary>
    protected virtual Task RunAsync(Func<Task> test) => RunWithHostsAsync(test);

    /// <summary>The test body with its hang guard, then every host it started disposed (also when it fails).</summary>
    protected async Task RunWithHostsAsync(Func<Task> test)
    {
        ArgumentNullException.ThrowIfNull(test);
        _hosts.Clear();
        _testTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(60), TimeProvider);
        try
        {
            await test();
        }
        finally
        {
            foreach (var host in _hosts) await host.DisposeAsync();
            _hosts.Clear();
            _testTimeout.Dispose();
        }
    }

    /// <summary>A node's key pair: inside a simulation drawn from its seed (peer ids decide tie-breaks and routing, so a seed replays them), else fresh.</summary>
    protected virtual KeyPair CreateIdentity(string nodeName) => SimulationExecutor.Current is { } sim
        ? KeyPair.FromRandom(sim.CreateRandom("identity", nodeName))
        : KeyPair.Generate();

    /// <summary>A node's entropy (Noise ephemeral keys, ping payloads): inside a simulation drawn from its seed, so a seed replays the bytes on the wire too; else the OS's.</summary>
    protected virtual IRandomSource CreateRandomSource(string nodeName) => SimulationExecutor.Current is { } sim
        ? new SeededRandomSource(sim.CreateRandom("entropy", nodeName))
        : SystemRandomSource.Instance;

    /// <summary>Randomness for test data; a simulation draws it from its seed.</summary>
    protected virtual Random CreateRandom(string purpose) => TestSeed.CreateRandom();

    private byte[] RandomBytes(string purpose, int count)
    {
        var bytes = new byte[count];
        CreateRandom(purpose).NextBytes(bytes);
        return bytes;
    }

    protected async Task<P2PHost> StartHostAsync(string name)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = CreateIdentity(name),
            RandomSource = CreateRandomSource(name),
            Transports = [CreateTransport(name)],
            TimeProvider = TimeProvider,
        });
        _hosts.Add(host);
        host.Handle(EchoProtocol, async (context, ct) =>
        {
            await context.Stream.CopyToOnContextAsync(context.Stream, ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
        host.Handle(SinkProtocol, async (context, ct) =>
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            int n;
            while ((n = await context.Stream.ReadAsync(buffer, ct)) > 0) sha.AppendData(buffer, 0, n);
            await context.Stream.WriteAsync(sha.GetHashAndReset(), ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
        await host.StartAsync([ListenAddress(name)], TestToken);
        return host;
    }

    protected async Task<(P2PHost A, P2PHost B, PeerConnection AToB)> ConnectedPairAsync()
    {
        var a = await StartHostAsync("a");
        var b = await StartHostAsync("b");
        var connection = await a.ConnectAsync(b.AdvertisedAddresses[0], TestToken);
        return (a, b, connection);
    }

    protected static async Task<byte[]> EchoAsync(YamuxStream stream, byte[] payload, CancellationToken ct)
    {
        await stream.WriteAsync(payload, ct);
        await stream.CompleteWritesAsync(ct);
        return await ReadToEndAsync(stream, ct);
    }

    protected static async Task<byte[]> ReadToEndAsync(Stream stream, CancellationToken ct)
    {
        using var ms = new MemoryStream();
        await stream.CopyToOnContextAsync(ms, ct);
        return ms.ToArray();
    }

    private static TaskCompletionSource<T> NewSignal<T>() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    [Test]
    public Task Connect_AuthenticatesBothPeers() => RunAsync(async () =>
    {
        var a = await StartHostAsync("a");
        var b = await StartHostAsync("b");
        var (outbound, inbound) = await HostConnections.ConnectAsync(a, b, TestToken);

        Assert.That(outbound.RemotePeer, Is.EqualTo(b.PeerId));
        Assert.That(inbound.RemotePeer, Is.EqualTo(a.PeerId));
    });

    [Test]
    public Task Connect_FailsWithNoiseError_WhenAddressNamesAnotherPeer() => RunAsync(async () =>
    {
        var a = await StartHostAsync("a");
        var b = await StartHostAsync("b");
        var impostor = CreateIdentity("impostor").PeerId;

        var dial = a.ConnectAsync(b.ListenAddresses[0].WithPeerId(impostor), TestToken);

        await Assert.ThatAsync(async () => await dial, Throws.InstanceOf<NoiseException>());
        Assert.That(a.Connections, Is.Empty);
    });

    [Test]
    public Task Streams_OpenInBothDirections() => RunAsync(async () =>
    {
        var (a, b, _) = await ConnectedPairAsync();
        var payload = RandomBytes("payload", 10_000);

        var ab = await a.OpenStreamAsync(b.PeerId, EchoProtocol, TestToken);
        var ba = await b.OpenStreamAsync(a.PeerId, EchoProtocol, TestToken);

        Assert.That(await EchoAsync(ab, payload, TestToken), Is.EqualTo(payload));
        Assert.That(await EchoAsync(ba, payload, TestToken), Is.EqualTo(payload));
        Assert.That(b.Connections, Has.Count.EqualTo(1), "the reverse stream reuses the inbound connection");
    });

    [Test]
    public Task ConcurrentDials_ShareOneConnection() => RunAsync(async () =>
    {
        var a = await StartHostAsync("a");
        var b = await StartHostAsync("b");

        var dials = Enumerable.Range(0, 16).Select(_ => a.ConnectAsync(b.AdvertisedAddresses[0], TestToken)).ToArray();
        var connections = await Task.WhenAll(dials);

        Assert.That(connections.Distinct().Count(), Is.EqualTo(1));
        // Over TCP under load a connect that looked for a connection just before the shared dial ended once dialed again.
        Assert.That(a.Connections, Has.Count.EqualTo(1), string.Join(" / ", a.Connections.Select(c => $"{c} draining={c.IsDraining}")));
    });

    [Test]
    public Task Streams_ThousandConcurrentOnOneConnection_AllEchoTheirOwnData() => RunAsync(async () =>
    {
        var (a, b, connection) = await ConnectedPairAsync();

        var calls = Enumerable.Range(0, ConcurrentStreams).Select(async i =>
        {
            var payload = BitConverter.GetBytes(i).Concat(new byte[1020]).ToArray();
            var stream = await a.OpenStreamAsync(b.PeerId, EchoProtocol, TestToken);
            await using (stream)
                return (await EchoAsync(stream, payload, TestToken)).AsSpan().SequenceEqual(payload);
        });
        var results = await Task.WhenAll(calls);

        Assert.That(results, Has.All.True);
        Assert.That(a.Connections, Is.EquivalentTo(new[] { connection }));
    });

    [Test]
    public Task Transfer_LargePayloadThroughFlowControl_ArrivesIntact() => RunAsync(async () =>
    {
        var (a, b, _) = await ConnectedPairAsync();
        var random = CreateRandom("transfer");
        var chunk = new byte[256 * 1024];
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        var stream = await a.OpenStreamAsync(b.PeerId, SinkProtocol, TestToken);
        for (var sent = 0; sent < LargeTransferBytes; sent += chunk.Length)
        {
            random.NextBytes(chunk);
            var length = Math.Min(chunk.Length, LargeTransferBytes - sent);
            sha.AppendData(chunk, 0, length);
            await stream.WriteAsync(chunk.AsMemory(0, length), TestToken);
        }
        await stream.CompleteWritesAsync(TestToken);
        var remoteHash = await ReadToEndAsync(stream, TestToken);

        Assert.That(remoteHash, Is.EqualTo(sha.GetHashAndReset()));
    });

    [Test]
    public Task HalfClose_LetsTheRemoteAnswerAfterOurEndOfStream() => RunAsync(async () =>
    {
        var (a, b, _) = await ConnectedPairAsync();
        var stream = await a.OpenStreamAsync(b.PeerId, SinkProtocol, TestToken);

        await stream.WriteAsync("hello"u8.ToArray(), TestToken);
        await stream.CompleteWritesAsync(TestToken);

        Assert.That(await ReadToEndAsync(stream, TestToken), Is.EqualTo(SHA256.HashData("hello"u8)));
        await Assert.ThatAsync(async () => await stream.WriteAsync(new byte[1], TestToken), Throws.InstanceOf<Exception>(),
            "writing after our own FIN is refused");
    });

    [Test]
    public Task Reset_IsSeenByTheRemoteHandler_AndTheConnectionSurvives() => RunAsync(async () =>
    {
        const string waitProtocol = "/conformance/wait/1.0.0";
        var (a, b, connection) = await ConnectedPairAsync();
        var observed = NewSignal<Exception?>();
        b.Handle(waitProtocol, async (context, ct) =>
        {
            try
            {
                _ = await context.Stream.ReadAsync(new byte[16], ct);
                _ = await context.Stream.ReadAsync(new byte[16], ct);
                observed.TrySetResult(null);
            }
            catch (Exception e)
            {
                observed.TrySetResult(e);
                throw;
            }
        });

        var stream = await a.OpenStreamAsync(b.PeerId, waitProtocol, TestToken);
        await stream.WriteAsync(new byte[1], TestToken);
        stream.Reset();

        Assert.That(await observed.Task.WaitOrCancelAsync(TestToken), Is.InstanceOf<YamuxStreamResetException>());
        var echo = await a.OpenStreamAsync(b.PeerId, EchoProtocol, TestToken);
        Assert.That(await EchoAsync(echo, [1, 2, 3], TestToken), Is.EqualTo(new byte[] { 1, 2, 3 }));
        Assert.That(connection.IsClosed, Is.False);
    });

    [Test]
    public Task GoAway_RefusesNewStreams_WhileOpenStreamsFinish() => RunAsync(async () =>
    {
        var (a, b, connection) = await ConnectedPairAsync();
        var open = await a.OpenStreamAsync(b.PeerId, EchoProtocol, TestToken);
        await open.WriteAsync(new byte[] { 7 }, TestToken);

        var inbound = b.GetConnection(a.PeerId)!;
        await inbound.Session.GoAwayAsync(TestToken);

        await Assert.ThatAsync(async () => await connection.OpenStreamAsync([EchoProtocol], TestToken), Throws.InstanceOf<YamuxException>());
        await open.CompleteWritesAsync(TestToken);
        Assert.That(await ReadToEndAsync(open, TestToken), Is.EqualTo(new byte[] { 7 }));
    });

    [Test]
    public Task UnsupportedProtocol_FailsTheStreamOnly() => RunAsync(async () =>
    {
        var (a, b, connection) = await ConnectedPairAsync();

        await Assert.ThatAsync(async () => await a.OpenStreamAsync(b.PeerId, "/nobody/speaks/this", TestToken),
            Throws.InstanceOf<MultistreamException>());
        var echo = await a.OpenStreamAsync(b.PeerId, EchoProtocol, TestToken);
        Assert.That(await EchoAsync(echo, [9], TestToken), Is.EqualTo(new byte[] { 9 }));
        Assert.That(connection.IsClosed, Is.False);
    });

    [Test]
    public Task ThrowingHandler_ResetsItsStream_AndTheHostKeepsServing() => RunAsync(async () =>
    {
        const string failing = "/conformance/fail/1.0.0";
        var (a, b, _) = await ConnectedPairAsync();
        b.Handle(failing, (_, _) => throw new InvalidOperationException("handler bug"));

        // The reset may overtake the negotiation's answer, so it surfaces from the open or the read.
        await Assert.ThatAsync(async () =>
        {
            var stream = await a.OpenStreamAsync(b.PeerId, failing, TestToken);
            await ReadToEndAsync(stream, TestToken);
        }, Throws.InstanceOf<YamuxStreamResetException>());

        var echo = await a.OpenStreamAsync(b.PeerId, EchoProtocol, TestToken);
        Assert.That(await EchoAsync(echo, [4], TestToken), Is.EqualTo(new byte[] { 4 }));
    });

    [Test]
    public Task PingAndIdentify_DescribeTheRemote() => RunAsync(async () =>
    {
        var (a, b, _) = await ConnectedPairAsync();

        var rtt = await a.PingAsync(b.PeerId, TestToken);
        var info = await a.IdentifyAsync(b.PeerId, TestToken);

        Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(info.PublicKey.ToPeerId(), Is.EqualTo(b.PeerId));
        Assert.That(info.Protocols, Does.Contain(EchoProtocol).And.Contain("/ipfs/ping/1.0.0"));
        Assert.That(info.ListenAddresses, Does.Contain(b.ListenAddresses[0]));
    });

    [Test]
    public Task GracefulStop_ClosesTheRemotesConnection() => RunAsync(async () =>
    {
        var (a, b, connection) = await ConnectedPairAsync();
        var gone = NewSignal<PeerConnection>();
        a.PeerDisconnected += c => gone.TrySetResult(c);

        await b.DisposeAsync();

        Assert.That(await gone.Task.WaitOrCancelAsync(TestToken), Is.SameAs(connection));
        Assert.That(a.Connections, Is.Empty);
    });
}
