using System.Buffers.Binary;
using Google.Protobuf;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Identity.Proto;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Noise.Proto;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;
using PublicKey = P2PInference.Facilities.Identity.PublicKey;

namespace P2PInference.Tests.Unit.Noise;

[TestFixture]
[CancelAfter(10000)]
public sealed class NoiseHandshakeTests
{
    private static readonly KeyPair Alice = NoiseTestPeers.Key(1);
    private static readonly KeyPair Bob = NoiseTestPeers.Key(2);
    private static readonly KeyPair Mallory = NoiseTestPeers.Key(3);

    [Test]
    public async Task Handshake_BothSidesLearnEachOthersPeerId(CancellationToken cancellationToken)
    {
        var (initiator, responder) = await NoiseTestPeers.ConnectAsync(Alice, Bob, cancellationToken);
        await using var _ = initiator;
        await using var __ = responder;

        Assert.Multiple(() =>
        {
            Assert.That(initiator.RemotePeer, Is.EqualTo(Bob.PeerId));
            Assert.That(initiator.RemotePublicKey, Is.EqualTo(Bob.PublicKey));
            Assert.That(responder.RemotePeer, Is.EqualTo(Alice.PeerId));
            Assert.That(responder.RemotePublicKey, Is.EqualTo(Alice.PublicKey));
        });
    }

    [Test]
    public async Task Handshake_Succeeds_WhenInitiatorExpectsNoParticularPeer(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = NoiseHandshake.InitiateAsync(a, Alice, expectedRemote: null, cancellationToken);
        await using var responder = await NoiseHandshake.RespondAsync(b, Bob, cancellationToken);
        await using var secured = await initiator;

        Assert.That(secured.RemotePeer, Is.EqualTo(Bob.PeerId));
    }

    [Test]
    public async Task Handshake_Fails_WhenRemoteIsNotTheExpectedPeer(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = NoiseHandshake.InitiateAsync(a, Alice, Mallory.PeerId, cancellationToken);
        var responder = NoiseHandshake.RespondAsync(b, Bob, cancellationToken);

        var failure = Assert.ThrowsAsync<NoiseException>(async () => await initiator);
        Assert.That(failure!.Message, Does.Contain("expected"));
        // The initiator hangs up before revealing itself, so the responder fails too rather than waiting.
        Assert.ThrowsAsync<NoiseException>(async () => await responder);
    }

    [Test]
    public void Handshake_Fails_WhenResponderSignatureIsFromWrongKey(CancellationToken cancellationToken)
    {
        // Claims Bob's identity but can only sign with Mallory's key.
        var failure = InitiateAgainstForgedResponder(
            staticKey => NoisePayload.CreateSigned(Bob.PublicKey, Mallory, staticKey), Bob.PeerId, cancellationToken);

        Assert.That(failure.Message, Does.Contain("signature"));
    }

    [Test]
    public void Handshake_Fails_WhenSignatureCoversAnotherNoiseKey(CancellationToken cancellationToken)
    {
        // A genuine signature by Bob, replayed from a handshake that used a different Noise static key.
        var otherStatic = new byte[32];
        otherStatic[0] = 9;
        var failure = InitiateAgainstForgedResponder(
            _ => NoisePayload.CreateSigned(Bob.PublicKey, Bob, otherStatic), Bob.PeerId, cancellationToken);

        Assert.That(failure.Message, Does.Contain("signature"));
    }

    [Test]
    public void Handshake_Fails_WhenIdentityKeyIsOversized(CancellationToken cancellationToken)
    {
        var payload = new NoiseHandshakePayload
        {
            IdentityKey = ByteString.CopyFrom(new byte[PublicKey.MaxEncodedLength + 1]),
            IdentitySig = ByteString.CopyFrom(new byte[64]),
        }.ToByteArray();

        var failure = InitiateAgainstForgedResponder(_ => payload, null, cancellationToken);

        Assert.That(failure.Message, Does.Contain("exceeds"));
    }

    [Test]
    public void Handshake_Fails_WhenPayloadIsNotProtobuf(CancellationToken cancellationToken)
    {
        // Field 1, length-delimited, with a length far past the end of the message.
        byte[] payload = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];

        var failure = InitiateAgainstForgedResponder(_ => payload, null, cancellationToken);

        Assert.That(failure.Message, Does.Contain("malformed"));
    }

    [Test]
    public void Handshake_Fails_WhenPayloadLacksSignature(CancellationToken cancellationToken)
    {
        var payload = new NoiseHandshakePayload { IdentityKey = ByteString.CopyFrom(Bob.PublicKey.ToProtobuf()) }.ToByteArray();

        var failure = InitiateAgainstForgedResponder(_ => payload, null, cancellationToken);

        Assert.That(failure.Message, Does.Contain("signature"));
    }

    [Test]
    public void Handshake_Fails_WhenIdentityKeyTypeIsUnsupported(CancellationToken cancellationToken)
    {
        var rsa = new PublicKey(KeyType.Rsa, new byte[40]);

        var failure = InitiateAgainstForgedResponder(
            staticKey => NoisePayload.CreateSigned(rsa, Bob, staticKey), null, cancellationToken);

        Assert.That(failure.Message, Does.Contain("not supported"));
    }

    [Test]
    public async Task Respond_Fails_WhenInitiatorEphemeralKeyIsLowOrder(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var responder = NoiseHandshake.RespondAsync(b, Bob, cancellationToken);

        var frame = new byte[2 + 32]; // an all-zero X25519 point forces an all-zero shared secret
        BinaryPrimitives.WriteUInt16BigEndian(frame, 32);
        await a.WriteAsync(frame, cancellationToken);

        var failure = Assert.ThrowsAsync<NoiseException>(async () => await responder);
        Assert.That(failure!.Message, Does.Contain("low-order"));
    }

    [Test]
    public async Task Initiate_ThrowsNoiseException_OnRandomBytes(CancellationToken cancellationToken)
    {
        var random = TestSeed.CreateRandom();
        for (var round = 0; round < 16; round++)
        {
            var (a, b) = DuplexStreamPair.Create();
            var initiator = NoiseHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancellationToken);

            var garbage = new byte[random.Next(0, 400)];
            random.NextBytes(garbage);
            await b.WriteAsync(garbage, cancellationToken);
            await b.DisposeAsync(); // whatever the garbage claims, the stream then ends: no hang

            Assert.ThrowsAsync<NoiseException>(async () => await initiator, $"round {round}");
        }
    }

    [Test]
    public async Task Respond_ThrowsNoiseException_OnRandomBytes(CancellationToken cancellationToken)
    {
        var random = TestSeed.CreateRandom();
        for (var round = 0; round < 16; round++)
        {
            var (a, b) = DuplexStreamPair.Create();
            var responder = NoiseHandshake.RespondAsync(b, Bob, cancellationToken);

            var garbage = new byte[random.Next(2, 400)];
            random.NextBytes(garbage);
            // A first message is only a key, so random bytes framed as one get as far as message 3.
            BinaryPrimitives.WriteUInt16BigEndian(garbage, (ushort)Math.Min(garbage.Length, 32));
            await a.WriteAsync(garbage, cancellationToken);
            await a.DisposeAsync();

            Assert.ThrowsAsync<NoiseException>(async () => await responder, $"round {round}");
        }
    }

    [Test]
    public async Task Respond_ThrowsNoiseException_OnRandomThirdMessage(CancellationToken cancellationToken)
    {
        var random = TestSeed.CreateRandom();
        var (a, b) = DuplexStreamPair.Create();
        var responder = NoiseHandshake.RespondAsync(b, Bob, cancellationToken);

        var first = new byte[2 + 32];
        BinaryPrimitives.WriteUInt16BigEndian(first, 32);
        random.NextBytes(first.AsSpan(2));
        await a.WriteAsync(first, cancellationToken);
        var buffer = new byte[NoiseFraming.MaxFramedSize];
        await NoiseFraming.ReadFrameAsync(a, buffer, cancellationToken);

        var third = new byte[2 + 200];
        random.NextBytes(third);
        BinaryPrimitives.WriteUInt16BigEndian(third, 200);
        await a.WriteAsync(third, cancellationToken);

        var failure = Assert.ThrowsAsync<NoiseException>(async () => await responder);
        Assert.That(failure!.Message, Does.Contain("decrypt"));
    }

    [Test]
    public async Task Respond_ThrowsNoiseException_WhenConnectionClosesMidHandshake(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var responder = NoiseHandshake.RespondAsync(b, Bob, cancellationToken);

        var first = new byte[2 + 32];
        BinaryPrimitives.WriteUInt16BigEndian(first, 32);
        first[2] = 9;
        await a.WriteAsync(first, cancellationToken);
        await a.DisposeAsync();

        var failure = Assert.ThrowsAsync<NoiseException>(async () => await responder);
        Assert.That(failure!.Message, Does.Contain("closed"));
    }

    [Test]
    public async Task Initiate_ThrowsNoiseException_WhenLengthPrefixIsMaximalThenEof(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = NoiseHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancellationToken);

        await b.WriteAsync(new byte[] { 0xFF, 0xFF }, cancellationToken);
        await b.DisposeAsync();

        var failure = Assert.ThrowsAsync<NoiseException>(async () => await initiator);
        Assert.That(failure!.Message, Does.Contain("truncated"));
    }

    [Test]
    public async Task Initiate_IsCancelled_WhenResponderStalls(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var initiator = NoiseHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancel.Token);

        // The responder reads message 1 and then never answers.
        var buffer = new byte[NoiseFraming.MaxFramedSize];
        await NoiseFraming.ReadFrameAsync(b, buffer, cancellationToken);
        cancel.Cancel();

        Assert.CatchAsync<OperationCanceledException>(async () => await initiator);
        // The insecure stream was given up: the stalled peer sees the end of the stream.
        Assert.That(await b.ReadAsync(buffer, cancellationToken), Is.Zero);
    }

    [Test]
    public async Task Respond_IsCancelled_WhenInitiatorNeverSpeaks(CancellationToken cancellationToken)
    {
        var (_, b) = DuplexStreamPair.Create();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var responder = NoiseHandshake.RespondAsync(b, Bob, cancel.Token);

        await cancel.CancelAsync();

        Assert.CatchAsync<OperationCanceledException>(async () => await responder);
    }

    /// <summary>Runs an honest initiator against a responder that sends whatever payload it is given.</summary>
    private static NoiseException InitiateAgainstForgedResponder(Func<byte[], byte[]> payloadFor, PeerId? expected, CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = NoiseHandshake.InitiateAsync(a, Alice, expected, cancellationToken);
        var forger = NoiseTestPeers.ForgedResponderAsync(b, payloadFor, cancellationToken);

        var failure = Assert.ThrowsAsync<NoiseException>(async () => await initiator);
        Assert.That(async () => await forger, Throws.Nothing);
        return failure!;
    }
}
