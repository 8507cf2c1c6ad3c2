using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Noise;

/// <summary>Two peers joined by an in-memory duplex pipe, secured (or not yet) with Noise.</summary>
internal static class NoiseTestPeers
{
    public static KeyPair Key(byte seed)
    {
        var bytes = new byte[32];
        Array.Fill(bytes, seed);
        return KeyPair.FromSeed(bytes);
    }

    public static async Task<(NoiseSecureStream Initiator, NoiseSecureStream Responder)> ConnectAsync(
        KeyPair initiatorKey, KeyPair responderKey, CancellationToken cancellationToken, Func<Stream, Stream>? wrapInitiatorRaw = null)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = NoiseHandshake.InitiateAsync(wrapInitiatorRaw?.Invoke(a) ?? a, initiatorKey, responderKey.PeerId, cancellationToken);
        var responder = NoiseHandshake.RespondAsync(b, responderKey, cancellationToken);
        return (await initiator, await responder);
    }

    /// <summary>
    /// A responder that reads the initiator's first message and answers with the payload
    /// <paramref name="payloadFor"/> makes for its static key: for tests of what the initiator does
    /// with a payload no honest responder would send.
    /// </summary>
    public static async Task ForgedResponderAsync(Stream raw, Func<byte[], byte[]> payloadFor, CancellationToken cancellationToken)
    {
        using var staticKey = Curve25519KeyPair.Generate();
        using var state = new HandshakeState(initiator: false, ReadOnlySpan<byte>.Empty, staticKey);
        var buffer = new byte[NoiseFraming.MaxFramedSize];
        var length = await NoiseFraming.ReadFrameAsync(raw, buffer, cancellationToken);
        state.ReadMessage(buffer.AsSpan(0, length));
        length = state.WriteMessage(payloadFor(state.LocalStaticPublicKey), buffer.AsSpan(NoiseFraming.HeaderSize));
        await NoiseFraming.WriteFrameAsync(raw, buffer, length, cancellationToken);
    }

    /// <summary>Passes writes through; once armed, flips one bit of the next write.</summary>
    public sealed class TamperingStream(Stream inner) : PassThroughStream(inner)
    {
        private int _armedAt = -1;
        private bool _duplicate;

        public void FlipBitInNextWrite(int index) => _armedAt = index;

        public void DuplicateNextWrite() => _duplicate = true;

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_duplicate)
            {
                _duplicate = false;
                await Inner.WriteAsync(buffer, cancellationToken);
            }
            if (_armedAt < 0)
            {
                await Inner.WriteAsync(buffer, cancellationToken);
                return;
            }
            var copy = buffer.ToArray();
            copy[_armedAt] ^= 0x01;
            _armedAt = -1;
            await Inner.WriteAsync(copy, cancellationToken);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) Inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
