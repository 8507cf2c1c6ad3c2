using System.Buffers;
using System.Runtime.CompilerServices;
using Google.Protobuf;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Plaintext;

/// <summary>
/// The libp2p plaintext "security" protocol (<c>/plaintext/2.0.0</c>): both sides send their peer id
/// and public key, each checks the id matches the key, and the dialer also checks it reached the
/// peer it dialled. Nothing is encrypted or signed, so anyone on the path can read, forge or
/// impersonate: use it only in tests and simulations, never in production.
/// </summary>
/// <remarks>
/// The exchange reads exactly its own bytes (the length prefix one byte at a time), so the stream
/// it returns carries on with the remote's next byte. On any failure, cancellation included,
/// <c>insecure</c> is disposed.
/// </remarks>
public static class PlaintextHandshake
{
    public const string ProtocolId = "/plaintext/2.0.0";

    /// <summary>
    /// Bound on an <c>Exchange</c> message: a peer id (at most <see cref="PeerId.MaxLength"/>), a key
    /// envelope (at most <see cref="PublicKey.MaxEncodedLength"/>) and their field headers.
    /// </summary>
    public const int MaxMessageLength = PeerId.MaxLength + PublicKey.MaxEncodedLength + 16;

    private static readonly ConditionalWeakTable<KeyPair, byte[]> Exchanges = new();

    /// <summary>Runs the exchange as the dialer.</summary>
    /// <param name="expectedRemote">The peer dialled, when known; any other peer fails the exchange.</param>
    /// <exception cref="PlaintextException">The remote broke the protocol or is not <paramref name="expectedRemote"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired first.</exception>
    public static Task<PlaintextSession> InitiateAsync(Stream insecure, KeyPair localKey, PeerId? expectedRemote, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(insecure);
        ArgumentNullException.ThrowIfNull(localKey);
        return RunAsync(insecure, localKey, expectedRemote, cancellationToken);
    }

    /// <summary>Runs the exchange as the listener; the remote may be any peer.</summary>
    /// <exception cref="PlaintextException">The remote broke the protocol.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired first.</exception>
    public static Task<PlaintextSession> RespondAsync(Stream insecure, KeyPair localKey, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(insecure);
        ArgumentNullException.ThrowIfNull(localKey);
        return RunAsync(insecure, localKey, expectedRemote: null, cancellationToken);
    }

    private static async Task<PlaintextSession> RunAsync(Stream insecure, KeyPair localKey, PeerId? expectedRemote, CancellationToken cancellationToken)
    {
        try
        {
            // Not every Stream honours a token mid-read; disposing it ends the read for sure.
            await using (cancellationToken.Register(static s => ((Stream)s!).Dispose(), insecure))
            {
                try
                {
                    // Both sides send at once, as the spec says; neither waits for the other.
                    await insecure.WriteAsync(Encode(localKey), cancellationToken);
                    await insecure.FlushAsync(cancellationToken);
                    var (remotePeer, remoteKey) = await ReadAsync(insecure, cancellationToken);
                    if (expectedRemote is not null && remotePeer != expectedRemote)
                        throw new PlaintextException($"dialled {expectedRemote} but reached {remotePeer}");
                    cancellationToken.ThrowIfCancellationRequested();
                    return new PlaintextSession(insecure, remotePeer, remoteKey);
                }
                catch (Exception e) when (e is not OperationCanceledException && cancellationToken.IsCancellationRequested)
                {
                    throw new OperationCanceledException("the plaintext exchange was cancelled", e, cancellationToken);
                }
            }
        }
        catch
        {
            await insecure.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Our message for <paramref name="localKey"/>, the same for every connection: encoded once per key
    /// and shared, as writes never change the bytes they are given.
    /// </summary>
    private static byte[] Encode(KeyPair localKey) => Exchanges.GetValue(localKey, static key => EncodeExchange(key));

    private static byte[] EncodeExchange(KeyPair localKey)
    {
        var exchange = new Proto.Exchange
        {
            Id = ByteString.CopyFrom(localKey.PeerId.Bytes),
            Pubkey = localKey.PublicKey.ToMessage(),
        };
        var size = exchange.CalculateSize();
        var message = new byte[Varint.GetLength((ulong)size) + size];
        var prefix = Varint.Write(message, (ulong)size);
        exchange.WriteTo(message.AsSpan(prefix));
        return message;
    }

    /// <summary>Reads and checks the remote's <c>Exchange</c>; its length is bounded before anything is allocated.</summary>
    internal static async Task<(PeerId Peer, PublicKey Key)> ReadAsync(Stream stream, CancellationToken cancellationToken)
    {
        ulong? length;
        try
        {
            length = await Varint.ReadAsync(stream, cancellationToken);
        }
        catch (FormatException e)
        {
            throw new PlaintextException("malformed length prefix: " + e.Message, e);
        }
        catch (EndOfStreamException e)
        {
            throw new PlaintextException("stream ended inside the length prefix", e);
        }
        if (length is null) throw new PlaintextException("stream ended before the exchange message");
        if (length.Value is 0 or > MaxMessageLength)
            throw new PlaintextException($"exchange message of {length.Value} bytes (allowed 1..{MaxMessageLength})");

        var size = (int)length.Value;
        var buffer = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            try
            {
                await stream.ReadExactOnContextAsync(buffer.AsMemory(0, size), cancellationToken);
            }
            catch (EndOfStreamException e)
            {
                throw new PlaintextException($"stream ended inside the {size}-byte exchange message", e);
            }
            return Decode(buffer.AsSpan(0, size));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static (PeerId Peer, PublicKey Key) Decode(ReadOnlySpan<byte> message)
    {
        Proto.Exchange exchange;
        try
        {
            exchange = Proto.Exchange.Parser.ParseFrom(message);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new PlaintextException("malformed exchange message: " + e.Message, e);
        }
        if (!exchange.HasId || exchange.Pubkey is null)
            throw new PlaintextException("exchange message lacks its peer id or public key");

        PublicKey key;
        PeerId claimed;
        try
        {
            key = PublicKey.FromProtobuf(exchange.Pubkey.ToByteArray());
            claimed = PeerId.FromBytes(exchange.Id.Span);
        }
        catch (FormatException e)
        {
            throw new PlaintextException("malformed peer id or public key: " + e.Message, e);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new PlaintextException("malformed public key: " + e.Message, e);
        }
        if (!claimed.Matches(key))
            throw new PlaintextException($"peer id {claimed} does not belong to the key sent with it");
        return (claimed, key);
    }
}
