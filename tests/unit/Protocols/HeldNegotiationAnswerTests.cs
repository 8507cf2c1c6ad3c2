using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;
using P2PInference.Tests.Unit.Noise;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// The listener's answer to a lazy dialer (whose request came with its proposal) leaves with the
/// handler's first write; a dialer that waits for the answer before it sends more still gets it at once.
/// The real host stack over the in-memory network, on the simulation; with the plaintext handshake,
/// so that the listener's connection writes can be read as yamux frames.
/// </summary>
[TestFixture]
public sealed class HeldNegotiationAnswerTests
{
    private const string AnswerOnce = "/test/answer-once/1.0.0";
    private const string ReadTwice = "/test/read-twice/1.0.0";
    private const string Failing = "/test/throws/1.0.0";
    private const string Silent = "/test/silent/1.0.0";
    private static readonly TimeSpan Latency = TimeSpan.FromMilliseconds(5);

    private sealed record Pair(P2PHost Dialer, P2PHost Listener, CountingTransport ListenerTransport, SimulationClock Clock) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Dialer.DisposeAsync();
            await Listener.DisposeAsync();
        }
    }

    private static async Task<Pair> ConnectAsync(SimulationExecutor sim)
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        network.ConfigureLinks(link => link.Latency = Latency);
        var listenerTransport = new CountingTransport(network.CreateTransport("listener"));
        var listener = await StartAsync(sim, network, "listener", listenerTransport, serve: true);
        var dialer = await StartAsync(sim, network, "dialer", network.CreateTransport("dialer"), serve: false);
        await dialer.ConnectAsync(listener.AdvertisedAddresses[0], CancellationToken.None);
        // A first exchange answers the session's opening ping (its RTT probe), which would otherwise ride with the test's frames.
        var warmUp = await dialer.OpenStreamAsync(listener.PeerId, Silent, CancellationToken.None);
        await using (warmUp) await ReadToEndAsync(warmUp);
        await sim.Clock.RunUntilIdleAsync();
        // From here on the connection carries yamux frames only.
        listenerTransport.StartRecording();
        return new Pair(dialer, listener, listenerTransport, sim.Clock);
    }

    private static async Task<P2PHost> StartAsync(SimulationExecutor sim, InMemoryNetwork network, string name, ITransport transport, bool serve)
    {
        var host = await sim.StartHostAsync(network, name, sim.HostOptionsFor(network, name) with
        {
            Transports = [transport],
            SecurityProtocols = [PlaintextHandshake.ProtocolId],
        });
        if (serve)
        {
            host.Handle(AnswerOnce, async (context, ct) =>
            {
                var request = new byte[8];
                await context.Stream.ReadExactOnContextAsync(request, ct);
                await context.Stream.WriteAndCompleteAsync(request.Reverse().ToArray(), ct);
            });
            host.Handle(ReadTwice, async (context, ct) =>
            {
                var request = new byte[8];
                await context.Stream.ReadExactOnContextAsync(request.AsMemory(0, 4), ct);
                await context.Stream.ReadExactOnContextAsync(request.AsMemory(4), ct);
                await context.Stream.WriteAndCompleteAsync(request.Reverse().ToArray(), ct);
            });
            host.Handle(Failing, (_, _) => throw new InvalidOperationException("the handler failed before answering"));
            host.Handle(Silent, (_, _) => Task.CompletedTask);
        }
        return host;
    }

    /// <summary>The listener's multistream header and its echo of <paramref name="protocol"/>.</summary>
    private static int AnswerLength(string protocol) => MultistreamSelect.GetLazyProposalLength(protocol);

    private static async Task<byte[]> ReadToEndAsync(Stream stream)
    {
        using var received = new MemoryStream();
        await stream.CopyToOnContextAsync(received, CancellationToken.None);
        return received.ToArray();
    }

    [Test]
    public void LazyDialer_GetsTheAnswerAndTheResponse_InOneListenerWrite() => SimulationTest.Run(async sim =>
    {
        await using var pair = await ConnectAsync(sim);

        var stream = await pair.Dialer.OpenStreamLazyAsync(pair.Listener.PeerId, AnswerOnce, "12345678"u8.ToArray(), CancellationToken.None);
        await using (stream)
        {
            await pair.Dialer.ReadLazyAnswerAsync(stream, AnswerOnce, CancellationToken.None);
            var response = await ReadToEndAsync(stream);

            Assert.That(response, Is.EqualTo("87654321"u8.ToArray()));
            // The ACK, then the answer, the response and its FIN in one data frame: one connection write.
            Assert.That(pair.ListenerTransport.WritesOf(stream.Id), Is.EqualTo(new[]
            {
                $"WindowUpdate Ack + Data Fin {AnswerLength(AnswerOnce) + 8}",
            }));
        }
    });

    [Test]
    public void DialerThatWaitsForTheAnswer_GetsItAtOnce_AndCompletes() => SimulationTest.Run(async sim =>
    {
        await using var pair = await ConnectAsync(sim);
        var start = sim.Clock.Elapsed;

        // The proposal alone, then nothing until the answer came (as stock js-libp2p dials).
        var stream = await pair.Dialer.OpenStreamAsync(pair.Listener.PeerId, AnswerOnce, CancellationToken.None);
        await using (stream)
        {
            var answered = sim.Clock.Elapsed - start;
            await stream.WriteAsync("abcdefgh"u8.ToArray(), CancellationToken.None);
            var response = await ReadToEndAsync(stream);

            Assert.That(response, Is.EqualTo("hgfedcba"u8.ToArray()));
            Assert.That(answered, Is.EqualTo(2 * Latency), "the answer left as soon as the proposal came");
            Assert.That(pair.ListenerTransport.WritesOf(stream.Id), Is.EqualTo(new[]
            {
                $"WindowUpdate Ack + Data None {AnswerLength(AnswerOnce)}",
                "Data Fin 8",
            }), "the answer at once, then the response");
        }
    });

    [Test]
    public void HandlerThatReadsTwiceBeforeWriting_SendsTheAnswer_ToADialerWaitingForIt() => SimulationTest.Run(async sim =>
    {
        await using var pair = await ConnectAsync(sim);
        var start = sim.Clock.Elapsed;

        // The proposal and half the request; the dialer sends the rest only after the answer.
        var stream = await pair.Dialer.OpenStreamLazyAsync(pair.Listener.PeerId, ReadTwice, "1234"u8.ToArray(), CancellationToken.None);
        await using (stream)
        {
            await pair.Dialer.ReadLazyAnswerAsync(stream, ReadTwice, CancellationToken.None);
            var answered = sim.Clock.Elapsed - start;
            await stream.WriteAsync("5678"u8.ToArray(), CancellationToken.None);
            var response = await ReadToEndAsync(stream);

            Assert.That(response, Is.EqualTo("87654321"u8.ToArray()));
            // One round trip: the handler's second read, which had to wait, sent the held answer (no timer did).
            Assert.That(answered, Is.EqualTo(2 * Latency));
            Assert.That(pair.ListenerTransport.WritesOf(stream.Id), Is.EqualTo(new[]
            {
                $"WindowUpdate Ack + Data None {AnswerLength(ReadTwice)}",
                "Data Fin 8",
            }));
        }
    });

    [Test]
    public void HandlerThatThrowsBeforeWriting_EndsTheDialersWaitWithAReset() => SimulationTest.Run(async sim =>
    {
        await using var pair = await ConnectAsync(sim);
        var start = sim.Clock.Elapsed;

        var stream = await pair.Dialer.OpenStreamLazyAsync(pair.Listener.PeerId, Failing, "12345678"u8.ToArray(), CancellationToken.None);
        await using (stream)
        {
            await Assert.ThatAsync(async () =>
                {
                    await pair.Dialer.ReadLazyAnswerAsync(stream, Failing, CancellationToken.None);
                    await ReadToEndAsync(stream);
                },
                Throws.InstanceOf<YamuxStreamResetException>());
            Assert.That(sim.Clock.Elapsed - start, Is.EqualTo(2 * Latency), "the reset came at once, not after a timeout");
        }
    });

    [Test]
    public void HandlerThatReturnsWithoutWriting_StillSendsTheAnswer_WithItsFin() => SimulationTest.Run(async sim =>
    {
        await using var pair = await ConnectAsync(sim);

        var stream = await pair.Dialer.OpenStreamLazyAsync(pair.Listener.PeerId, Silent, "12345678"u8.ToArray(), CancellationToken.None);
        await using (stream)
        {
            await pair.Dialer.ReadLazyAnswerAsync(stream, Silent, CancellationToken.None);

            Assert.That(await ReadToEndAsync(stream), Is.Empty);
            Assert.That(pair.ListenerTransport.WritesOf(stream.Id), Is.EqualTo(new[]
            {
                $"WindowUpdate Ack + Data Fin {AnswerLength(Silent)}",
            }), "the answer and the FIN in one frame");
        }
    });

    /// <summary>Records, once started, the yamux frames of each write a node makes on its connections: its socket sends.</summary>
    private sealed class CountingTransport(ITransport inner) : ITransport
    {
        private readonly List<YamuxHeader[]> _writes = [];
        private bool _recording;

        public void StartRecording() => _recording = true;

        /// <summary>The writes that carried frames of stream <paramref name="streamId"/>, each as those frames' "type flags [length]", joined by " + ".</summary>
        public string[] WritesOf(uint streamId) => _writes
            .Select(frames => frames.Where(f => f.StreamId == streamId)
                .Select(f => f.Type == YamuxFrameType.Data ? $"{f.Type} {f.Flags} {f.Length}" : $"{f.Type} {f.Flags}").ToArray())
            .Where(frames => frames.Length > 0)
            .Select(frames => string.Join(" + ", frames))
            .ToArray();

        private void Record(ReadOnlySpan<byte> bytes)
        {
            if (!_recording) return;
            var frames = new List<YamuxHeader>();
            while (!bytes.IsEmpty)
            {
                var header = YamuxHeader.Read(bytes);
                frames.Add(header);
                bytes = bytes[(YamuxHeader.Size + (header.Type == YamuxFrameType.Data ? (int)header.Length : 0))..];
            }

            _writes.Add([.. frames]);
        }

        public bool CanDial(Multiaddress address) => inner.CanDial(address);

        public bool CanListen(Multiaddress address) => inner.CanListen(address);

        public async ValueTask<RawConnection> DialAsync(Multiaddress address, CancellationToken cancellationToken) =>
            Wrap(await inner.DialAsync(address, cancellationToken));

        public async ValueTask<ITransportListener> ListenAsync(Multiaddress address, CancellationToken cancellationToken) =>
            new Listener(this, await inner.ListenAsync(address, cancellationToken));

        private RawConnection Wrap(RawConnection raw) =>
            new(new CountingStream(this, raw.Stream), raw.LocalAddress, raw.RemoteAddress) { IsLimited = raw.IsLimited };

        private sealed class Listener(CountingTransport owner, ITransportListener inner) : ITransportListener
        {
            public Multiaddress Address => inner.Address;

            public async ValueTask<RawConnection> AcceptAsync(CancellationToken cancellationToken) => owner.Wrap(await inner.AcceptAsync(cancellationToken));

            public ValueTask DisposeAsync() => inner.DisposeAsync();
        }

        private sealed class CountingStream(CountingTransport owner, Stream inner) : PassThroughStream(inner)
        {
            public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
            {
                owner.Record(buffer.Span);
                return Inner.WriteAsync(buffer, cancellationToken);
            }

            public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("writes are asynchronous here");

            protected override void Dispose(bool disposing)
            {
                if (disposing) Inner.Dispose();
                base.Dispose(disposing);
            }

            public override async ValueTask DisposeAsync()
            {
                await Inner.DisposeAsync();
                await base.DisposeAsync();
            }
        }
    }
}
