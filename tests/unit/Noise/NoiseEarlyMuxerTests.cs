using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Noise;

/// <summary>
/// Early muxer negotiation in the Noise handshake (NoiseExtensions.stream_muxers, libp2p specs
/// connections/inlined-muxer-negotiation.md): the muxer is the first of the initiator's list that
/// the responder supports, and a side that offers none leaves it to multistream-select.
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class NoiseEarlyMuxerTests
{
    private const string Yamux = "/yamux/1.0.0";
    private const string Mplex = "/mplex/6.7.0";
    private static readonly KeyPair Alice = NoiseTestPeers.Key(1);
    private static readonly KeyPair Bob = NoiseTestPeers.Key(2);

    [Test]
    public async Task Handshake_ChoosesTheMuxer_WhenBothSidesOfferIt(CancellationToken ct)
    {
        var (initiator, responder) = await UpgradeAsync([Yamux], [Yamux], ct);
        await using var _ = initiator;
        await using var __ = responder;

        Assert.That((initiator.EarlyMuxer, responder.EarlyMuxer), Is.EqualTo((Yamux, Yamux)));
        // The channel carries data straight away: the held last message went out first.
        await initiator.WriteAsync("hello"u8.ToArray(), ct);
        var received = new byte[5];
        await responder.ReadExactlyAsync(received, ct);
        Assert.That(received, Is.EqualTo("hello"u8.ToArray()));
    }

    [TestCase(new[] { Yamux }, new string[0])]
    [TestCase(new string[0], new[] { Yamux })]
    [TestCase(new string[0], new string[0])]
    public async Task Handshake_LeavesTheMuxerToMultistream_WhenEitherSideOffersNone(string[] initiatorMuxers, string[] responderMuxers, CancellationToken ct)
    {
        var (initiator, responder) = await UpgradeAsync(initiatorMuxers, responderMuxers, ct);
        await using var _ = initiator;
        await using var __ = responder;

        Assert.That((initiator.EarlyMuxer, responder.EarlyMuxer), Is.EqualTo(((string?)null, (string?)null)));
    }

    [Test]
    public async Task Handshake_PrefersTheInitiatorsOrder(CancellationToken ct)
    {
        // The spec's example: the responder prefers mplex, the initiator yamux; the initiator's order wins.
        var (initiator, responder) = await UpgradeAsync([Yamux, Mplex], [Mplex, Yamux], ct);
        await using var _ = initiator;
        await using var __ = responder;

        Assert.That((initiator.EarlyMuxer, responder.EarlyMuxer), Is.EqualTo((Yamux, Yamux)));
    }

    [Test]
    public void Handshake_Fails_WhenBothOfferMuxersButNoneInCommon(CancellationToken ct)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = Run(a, Alice, initiator: true, [Yamux], ct);
        var responder = Run(b, Bob, initiator: false, [Mplex], ct);

        var failure = Assert.ThrowsAsync<NoiseException>(async () => await initiator);
        Assert.That(failure!.Message, Does.Contain("no common muxer"));
        // The initiator hangs up after message 2: the responder fails rather than waits.
        Assert.CatchAsync<IOException>(async () => await responder);
    }

    [Test]
    public void Handshake_Fails_WhenTheRemoteOffersMoreMuxersThanAnyPeerSends(CancellationToken ct)
    {
        var names = Enumerable.Range(0, NoisePayload.MaxStreamMuxers + 1).Select(i => $"/muxer/{i}").ToArray();

        var failure = InitiateAgainstResponderSending(staticKey => NoisePayload.WithStreamMuxers(NoisePayload.Create(Bob, staticKey), names), ct);

        Assert.That(failure.Message, Does.Contain("stream muxers"));
    }

    [Test]
    public void Handshake_Fails_WhenTheExtensionsFieldIsTruncated(CancellationToken ct)
    {
        // Field 4 (extensions), length-delimited, claiming 10 bytes of which 2 follow.
        var failure = InitiateAgainstResponderSending(staticKey => [.. NoisePayload.Create(Bob, staticKey), 0x22, 10, 0x12, 0x00], ct);

        Assert.That(failure.Message, Does.Contain("malformed"));
    }

    [Test]
    public async Task SendHandshakeRest_LeavesTheChannelUnusable_WhenTheTransportFails(CancellationToken ct)
    {
        var (a, b) = DuplexStreamPair.Create();
        var failing = new FailingWrites(a);
        var responding = Run(b, Bob, initiator: false, [Yamux], ct);
        var initiator = await Run(failing, Alice, initiator: true, [Yamux], ct);
        failing.Fail = true;

        Assert.ThrowsAsync<IOException>(async () => await initiator.SendHandshakeRestAsync(ct));
        var later = Assert.ThrowsAsync<NoiseException>(async () => await initiator.WriteAsync("x"u8.ToArray(), ct));
        Assert.That(later!.Message, Does.Contain("unusable"));
        await initiator.DisposeAsync();
        Assert.CatchAsync<Exception>(async () => await responding, "the responder never gets the last message");
    }

    [Test]
    public void PayloadOffering_IsMadeOncePerMuxerList_AndVerifiesWithTheList()
    {
        IReadOnlyList<string> muxers = [Yamux];
        var local = NoiseLocalIdentity.For(NoiseTestPeers.Key(7));

        var first = local.PayloadOffering(muxers);

        Assert.That(local.PayloadOffering(muxers), Is.SameAs(first));
        Assert.That(local.PayloadOffering([]), Is.SameAs(local.Payload));
        NoisePayload.Verify(first, local.StaticKey.PublicKey, out var offered);
        Assert.That(offered, Is.EqualTo(muxers));
    }

    private static async Task<(NoiseSecureStream Initiator, NoiseSecureStream Responder)> UpgradeAsync(
        IReadOnlyList<string> initiatorMuxers, IReadOnlyList<string> responderMuxers, CancellationToken ct)
    {
        var (a, b) = DuplexStreamPair.Create();
        var responding = Run(b, Bob, initiator: false, responderMuxers, ct);
        var initiator = await Run(a, Alice, initiator: true, initiatorMuxers, ct);
        // The initiator's last message is held for its first write; with no muxer to negotiate it goes alone.
        await initiator.SendHandshakeRestAsync(ct);
        return (initiator, await responding);
    }

    private static Task<NoiseSecureStream> Run(Stream raw, KeyPair key, bool initiator, IReadOnlyList<string> muxers, CancellationToken ct)
    {
        var upgrade = new UpgradeStream(raw);
        return NoiseHandshake.RunUpgradeAsync(upgrade, upgrade, key, initiator, initiator ? Bob.PeerId : null, SystemRandomSource.Instance, muxers, ct);
    }

    private static NoiseException InitiateAgainstResponderSending(Func<byte[], byte[]> payloadFor, CancellationToken ct)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = Run(a, Alice, initiator: true, [Yamux], ct);
        var responder = NoiseTestPeers.ForgedResponderAsync(b, payloadFor, ct);

        var failure = Assert.ThrowsAsync<NoiseException>(async () => await initiator);
        Assert.That(async () => await responder, Throws.Nothing);
        return failure!;
    }

    private sealed class FailingWrites(Stream inner) : PassThroughStream(inner)
    {
        public bool Fail;

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
            Fail ? ValueTask.FromException(new IOException("broken pipe")) : Inner.WriteAsync(buffer, cancellationToken);

        protected override void Dispose(bool disposing)
        {
            if (disposing) Inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
