using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Noise;

/// <summary>
/// Given a seeded source, a Noise session puts the same bytes on the wire every time (ephemeral and
/// static keys included); with the system source no two sessions look alike.
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class NoiseSeededRandomnessTests
{
    // Shared by every run on purpose: a cached static key must not make a later run draw differently.
    private static readonly KeyPair Alice = NoiseTestPeers.Key(11);
    private static readonly KeyPair Bob = NoiseTestPeers.Key(12);

    private sealed record Transcript(byte[] FromInitiator, byte[] FromResponder);

    private static async Task<Transcript> RunSessionAsync(IRandomSource initiatorSource, IRandomSource responderSource, CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiatorWire = new RecordingStream(a);
        var responderWire = new RecordingStream(b);
        var initiating = NoiseHandshake.InitiateAsync(initiatorWire, Alice, Bob.PeerId, initiatorSource, cancellationToken);
        await using var responder = await NoiseHandshake.RespondAsync(responderWire, Bob, responderSource, cancellationToken);
        await using var initiator = await initiating;

        await initiator.WriteAsync("hello bob"u8.ToArray(), cancellationToken);
        await initiator.FlushAsync(cancellationToken);
        var received = new byte[9];
        await responder.ReadExactlyAsync(received, cancellationToken);
        await responder.WriteAsync(received, cancellationToken);
        await responder.FlushAsync(cancellationToken);
        await initiator.ReadExactlyAsync(received, cancellationToken);

        return new Transcript(initiatorWire.Written, responderWire.Written);
    }

    private static Task<Transcript> RunSeededAsync(int seed, CancellationToken cancellationToken) =>
        RunSessionAsync(new SeededRandomSource(new Random(seed)), new SeededRandomSource(new Random(seed + 1)), cancellationToken);

    [Test]
    public async Task SameSeed_PutsTheSameBytesOnTheWire(CancellationToken cancellationToken)
    {
        var first = await RunSeededAsync(2024, cancellationToken);
        var second = await RunSeededAsync(2024, cancellationToken);

        Assert.Multiple(() =>
        {
            // -> e, the first message, is the initiator's ephemeral public key alone (plus the frame's length).
            Assert.That(second.FromInitiator[..34], Is.EqualTo(first.FromInitiator[..34]), "initiator's ephemeral key");
            Assert.That(second.FromInitiator, Is.EqualTo(first.FromInitiator));
            Assert.That(second.FromResponder, Is.EqualTo(first.FromResponder));
        });
    }

    [Test]
    public async Task AnotherSeed_PutsOtherBytesOnTheWire(CancellationToken cancellationToken)
    {
        var first = await RunSeededAsync(1, cancellationToken);
        var second = await RunSeededAsync(3, cancellationToken);

        Assert.That(second.FromInitiator[..34], Is.Not.EqualTo(first.FromInitiator[..34]));
    }

    [Test]
    public async Task SystemSource_MakesEverySessionDifferent(CancellationToken cancellationToken)
    {
        var first = await RunSessionAsync(SystemRandomSource.Instance, SystemRandomSource.Instance, cancellationToken);
        var second = await RunSessionAsync(SystemRandomSource.Instance, SystemRandomSource.Instance, cancellationToken);

        Assert.Multiple(() =>
        {
            Assert.That(second.FromInitiator[..34], Is.Not.EqualTo(first.FromInitiator[..34]), "fresh ephemeral keys");
            Assert.That(second.FromResponder, Is.Not.EqualTo(first.FromResponder));
        });
    }

    [Test]
    public void StaticKey_FromASeededSource_ReplaysForAFreshSourceWithTheSameSeed()
    {
        var first = NoiseLocalIdentity.For(Alice, new SeededRandomSource(new Random(5))).StaticKey.PublicKey;
        var second = NoiseLocalIdentity.For(Alice, new SeededRandomSource(new Random(5))).StaticKey.PublicKey;
        var system = NoiseLocalIdentity.For(Alice).StaticKey.PublicKey;

        Assert.That(second, Is.EqualTo(first));
        Assert.That(system, Is.Not.EqualTo(first));
    }

    /// <summary>Keeps a copy of every byte written through it.</summary>
    private sealed class RecordingStream(Stream inner) : PassThroughStream(inner)
    {
        private readonly MemoryStream _written = new();

        public byte[] Written
        {
            get
            {
                lock (_written) return _written.ToArray();
            }
        }


        public override void Write(byte[] buffer, int offset, int count)
        {
            Record(buffer.AsSpan(offset, count));
            Inner.Write(buffer, offset, count);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Record(buffer.Span);
            return Inner.WriteAsync(buffer, cancellationToken);
        }

        private void Record(ReadOnlySpan<byte> bytes)
        {
            lock (_written) _written.Write(bytes);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) Inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
