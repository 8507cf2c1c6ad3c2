using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;

namespace P2PInference.Facilities.Net.Protocols.Identify;

/// <summary>
/// identify (<c>/ipfs/id/1.0.0</c>): the peer that accepts the stream writes one length-prefixed
/// <c>Identify</c> protobuf and closes; the peer that opened it reads that one message. identify push
/// (<see cref="PushProtocolId"/>) carries the same message the other way.
/// </summary>
public static class IdentifyProtocol
{
    public const string ProtocolId = "/ipfs/id/1.0.0";

    /// <summary>
    /// identify push: the peer that opens the stream writes one <c>Identify</c> message about itself, unasked, when
    /// its addresses or protocols change, and closes; the other reads it as it would an identify answer.
    /// </summary>
    public const string PushProtocolId = "/ipfs/id/push/1.0.0";

    /// <summary>
    /// The longest message we read. Generous on purpose: a peer with many addresses and protocols
    /// must not be refused, and the bound still caps memory per stream.
    /// </summary>
    public const int MaxMessageLength = 64 * 1024;

    /// <summary>
    /// The longest message we write: js-libp2p and go-libp2p refuse identify messages above 8 KiB.
    /// </summary>
    public const int MaxSentMessageLength = 8 * 1024;

    /// <summary>
    /// Listen addresses kept from one message; the rest are dropped, as the peer store would drop them.
    /// A message of <see cref="MaxMessageLength"/> holds thousands, and the result lives as long as the
    /// connection, so the count is bounded when it is read rather than later.
    /// </summary>
    public const int MaxListenAddresses = PeerStore.MaxAddressesPerPeer;

    /// <summary>Protocols kept from one message, in the order sent; the rest are dropped (see <see cref="MaxListenAddresses"/>).</summary>
    public const int MaxProtocols = PeerStore.MaxProtocolsPerPeer;

    /// <summary>Writes <paramref name="info"/> as one message. The caller closes the stream afterwards.</summary>
    /// <exception cref="ArgumentException">The message would exceed <see cref="MaxSentMessageLength"/>.</exception>
    public static async Task WriteAsync(Stream stream, IdentifyInfo info, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(info);
        var message = new Proto.Identify
        {
            PublicKey = info.PublicKey.ToMessage().ToByteString(),
            ProtocolVersion = info.ProtocolVersion,
            AgentVersion = info.AgentVersion,
        };
        foreach (var address in info.ListenAddresses)
            message.ListenAddrs.Add(ByteString.CopyFrom(address.Bytes));
        message.Protocols.Add(info.Protocols);
        if (info.ObservedAddress is not null)
            message.ObservedAddr = ByteString.CopyFrom(info.ObservedAddress.Bytes);
        var size = message.CalculateSize();
        if (size > MaxSentMessageLength)
            throw new ArgumentException($"identify message of {size} bytes exceeds {MaxSentMessageLength}, which other libp2p implementations refuse", nameof(info));
        await LengthPrefixedMessage.WriteAsync(stream, message, cancellationToken);
    }

    /// <summary>
    /// Reads one identify message from a peer we know as <paramref name="expectedRemote"/>. Does
    /// not wait for the stream to end. Listen addresses we cannot parse (transports we do not
    /// speak) are skipped. Only the first <see cref="MaxListenAddresses"/> addresses and
    /// <see cref="MaxProtocols"/> protocols are kept: truncated, not refused, so that a peer listing
    /// more (go-libp2p keeps up to 500 addresses of a connected peer) still connects.
    /// </summary>
    /// <exception cref="IdentifyException">No message, or its key is malformed or not <paramref name="expectedRemote"/>'s.</exception>
    /// <exception cref="MessageTooLargeException">The message exceeds <see cref="MaxMessageLength"/>.</exception>
    /// <exception cref="MalformedMessageException">The message is not an identify protobuf.</exception>
    /// <exception cref="EndOfStreamException">The stream ended inside the message.</exception>
    /// <param name="intern">
    /// Maps a protocol id or version string to an equal instance the caller holds already (its own),
    /// so that the connection's identify result shares them: every peer of a network names mostly the
    /// same protocols, and a node keeps one result per connection.
    /// </param>
    public static async Task<IdentifyInfo> ReadAsync(Stream stream, PeerId expectedRemote, CancellationToken cancellationToken, Func<string, string>? intern = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(expectedRemote);
        var message = await LengthPrefixedMessage.ReadAsync(stream, Proto.Identify.Parser, MaxMessageLength, cancellationToken)
            ?? throw new IdentifyException("the stream ended without an identify message");

        var key = ReadPublicKey(message, expectedRemote);
        if (!expectedRemote.Matches(key))
            throw new IdentifyException($"identify carries the key of {key.ToPeerId()}, not of {expectedRemote}");

        var listen = new List<Multiaddress>(Math.Min(message.ListenAddrs.Count, MaxListenAddresses));
        foreach (var bytes in message.ListenAddrs)
        {
            if (listen.Count == MaxListenAddresses) break;
            if (Multiaddress.TryFromBytes(bytes.Span, out var address)) listen.Add(address);
        }
        Multiaddress? observed = null;
        if (message.HasObservedAddr && Multiaddress.TryFromBytes(message.ObservedAddr.Span, out var parsed)) observed = parsed;

        string Shared(string value) => intern is null ? value : intern(value);
        var protocols = new string[Math.Min(message.Protocols.Count, MaxProtocols)];
        for (var i = 0; i < protocols.Length; i++) protocols[i] = Shared(message.Protocols[i]);
        return new IdentifyInfo(key, listen, protocols, observed, Shared(message.ProtocolVersion), Shared(message.AgentVersion));
    }

    private static PublicKey ReadPublicKey(Proto.Identify message, PeerId expectedRemote)
    {
        try
        {
            if (message.HasPublicKey) return PublicKey.FromProtobuf(message.PublicKey.Span);
            // The key is optional on the wire; an inlined (Ed25519) PeerId carries it anyway.
            return expectedRemote.TryGetPublicKey() ?? throw new IdentifyException("identify carries no public key");
        }
        catch (FormatException e)
        {
            throw new IdentifyException("identify carries a malformed public key: " + e.Message, e);
        }
    }
}
