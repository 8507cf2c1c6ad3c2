using System.Buffers;
using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Dht.Proto;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Serves inbound kad streams in server mode: any number of requests per stream (up to a cap), each
/// answered in order, as the spec asks. A malformed or unacceptable request throws a typed error,
/// which makes the host reset that stream only; the node goes on serving everyone else.
/// </summary>
internal sealed class KadRequestHandler(
    P2PHost host,
    KademliaDhtOptions options,
    RoutingTable routingTable,
    ProviderStore providers,
    RecordStore records,
    Action<PeerId> onRequestFrom)
{
    private long _requestsServed;

    public long RequestsServed => Interlocked.Read(ref _requestsServed);

    public async Task HandleStreamAsync(StreamContext context, CancellationToken cancellationToken)
    {
        var remote = context.RemotePeer;
        onRequestFrom(remote);
        // One idle timer per stream, re-armed for each request: a requester usually sends one request
        // and closes, so a timer and a linked source per read would double what each stream costs. The
        // host's token cancels it too, through one registration rather than a source linked to both.
        using var idle = new CancellationTokenSource(options.InboundIdleTimeout, options.TimeProvider);
        using var hostCancelled = cancellationToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), idle);
        var firstByte = ArrayPool<byte>.Shared.Rent(1);
        try
        {
            for (var served = 0; served < options.MaxRequestsPerStream; served++)
            {
#pragma warning disable RS0030 // The source runs on options.TimeProvider's timer (created with it above); CancelAfter re-arms that timer.
                if (served > 0) idle.CancelAfter(options.InboundIdleTimeout);
#pragma warning restore RS0030
                Message request;
                try
                {
                    // The next request's first byte is awaited here, and the rest, which comes with it, read after:
                    // after a reply this is a wait for the requester to close, which then suspends this method
                    // alone rather than the reader's too (every async method waiting costs allocations).
                    if (await context.Stream.ReadAsync(firstByte.AsMemory(0, 1), idle.Token) == 0) return;
                    request = (await LengthPrefixedMessage.ReadAsync(context.Stream, Message.Parser, options.MaxMessageSize, firstByte[0], idle.Token))!;
                    KadMessageCodec.Validate(request, options.MaxKeySize);
                }
                catch (OperationCanceledException) when (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    return;
                }
                Interlocked.Increment(ref _requestsServed);
                // Only writes are counted against an origin, and working one out allocates: most requests are reads.
                var origin = request.Type is Message.Types.MessageType.AddProvider or Message.Types.MessageType.PutValue ? context.Connection.Origin : null;
                var frame = Answer(remote, request, context.Connection.RemoteScope, origin, out var length);
                if (frame is null)
                {
                    // Nothing to write (ADD_PROVIDER): the timer waits for the next request from the top.
                    continue;
                }
                try
                {
                    // The same timer bounds writing the reply: a requester that sends requests and never reads the
                    // replies fills the stream's window, and the write would then hold this handler until the
                    // connection ends.
#pragma warning disable RS0030 // As above: the provider's timer, re-armed.
                    idle.CancelAfter(options.ReplyWriteTimeout);
#pragma warning restore RS0030
                    try
                    {
                        await context.Stream.WriteAsync(frame.AsMemory(0, length), idle.Token);
                        await context.Stream.FlushAsync(idle.Token);
                    }
                    catch (OperationCanceledException e) when (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                    {
                        // Thrown, so the host resets the stream: part of the reply may be queued on it.
                        throw new KadProtocolException($"{remote} did not take the {request.Type} reply within {options.ReplyWriteTimeout}", e);
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(frame);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(firstByte);
        }
    }

    /// <summary>
    /// Answers one request with its reply, length-prefixed, in the first <paramref name="length"/> bytes of a
    /// buffer rented from <see cref="ArrayPool{T}.Shared"/>, which the caller returns; null for ADD_PROVIDER,
    /// which has no reply on the wire.
    /// </summary>
    /// <inheritdoc cref="Handle"/>
    internal byte[]? Answer(PeerId remote, Message request, AddressScope remoteScope, string? origin, out int length)
    {
        // Most requests are FIND_NODE, whose reply is its type, the closer peers and the cluster level: its few
        // bytes around the peers are written without a Message to hold them.
        if (request.Type == Message.Types.MessageType.FindNode)
            return FrameWithCloserPeers(null, request, request.Key.Span, remote, out length);
        var reply = Handle(remote, request, remoteScope, origin, out var withCloserPeers);
        if (reply is null)
        {
            length = 0;
            return null;
        }
        return withCloserPeers ? FrameWithCloserPeers(reply, request, request.Key.Span, remote, out length) : LengthPrefixedMessage.RentFrame(reply, out length);
    }

    /// <summary>Answers one request, but for the closer peers (<paramref name="withCloserPeers"/> says whether it has them); null for ADD_PROVIDER.</summary>
    /// <param name="remote">The sender.</param>
    /// <param name="request">What it asks.</param>
    /// <param name="remoteScope">
    /// The scope of the address we reach the sender at (its connection's remote address): ADD_PROVIDER
    /// keeps only the addresses it may name (<see cref="KadReplyAddresses"/>). Loopback, which keeps them
    /// all, by default.
    /// </param>
    /// <param name="origin">
    /// Where the sender's connection comes from (<see cref="PeerConnection.Origin"/>), whose share of the stores its
    /// ADD_PROVIDER and PUT_VALUE are counted against; null for none.
    /// </param>
    /// <param name="withCloserPeers">Whether the reply names the peers closest to the request's key.</param>
    /// <exception cref="KadProtocolException">The request is unacceptable.</exception>
    private Message? Handle(PeerId remote, Message request, AddressScope remoteScope, string? origin, out bool withCloserPeers)
    {
        withCloserPeers = request.Type is Message.Types.MessageType.FindNode or Message.Types.MessageType.GetProviders
            or Message.Types.MessageType.GetValue;
        switch (request.Type)
        {
            case Message.Types.MessageType.FindNode:
            {
                return NewReply(request);
            }
            case Message.Types.MessageType.GetProviders:
            {
                RequireKey(request);
                var reply = NewReply(request);
                reply.Key = request.Key;
                foreach (var record in providers.Get(request.Key.Span, options.K))
                {
                    var addresses = record.Addresses.Count > 0 ? record.Addresses : host.PeerStore.GetAddresses(record.Provider);
                    reply.ProviderPeers.Add(KadMessageCodec.FromPeer(record.Provider, addresses, options.MaxAddressesPerPeer,
                        record.Provider == host.PeerId || host.GetConnection(record.Provider) is not null));
                }
                return reply;
            }
            case Message.Types.MessageType.AddProvider:
            {
                RequireKey(request);
                // Only the sender may announce itself (spec: providerPeers must match the sender's PeerId).
                foreach (var wire in request.ProviderPeers)
                {
                    // A peer on a public address announcing itself at our loopback or LAN would aim our dials,
                    // and those of every node we hand the record to, there.
                    KadReplyAddresses.Restrict(wire, remoteScope);
                    var peer = KadMessageCodec.ToPeer(wire, options.MaxAddressesPerPeer);
                    if (peer is null || peer.PeerId != remote) continue;
                    IReadOnlyList<Multiaddress> addresses = peer.Addresses.Count > 0
                        ? peer.Addresses
                        : host.PeerStore.GetAddresses(remote).Take(options.MaxAddressesPerPeer).ToArray();
                    if (peer.Addresses.Count > 0) host.PeerStore.AddAddresses(remote, peer.Addresses, AddressSource.Self, remoteScope);
                    providers.Add(request.Key.Span, remote, addresses, origin: origin);
                    break;
                }
                return null;
            }
            case Message.Types.MessageType.PutValue:
            {
                RequireKey(request);
                var record = request.Record ?? throw new KadProtocolException("PUT_VALUE without a record");
                if (!record.Key.Equals(request.Key))
                    throw new KadProtocolException("PUT_VALUE record key differs from the message key");
                if (record.Value.Length > options.MaxRecordSize)
                    throw new KadProtocolException($"record value of {record.Value.Length} bytes exceeds {options.MaxRecordSize}");
                var key = request.Key.ToByteArray();
                var value = record.Value.ToByteArray();
                if (!options.RecordValidator(key, value))
                    throw new KadProtocolException("record rejected by the validator");
                if (!records.Put(key, value, remote, origin))
                    throw new KadProtocolException($"record refused: the store is full ({options.MaxRecords} records or {options.MaxRecordStoreBytes} bytes), the sender holds its {options.MaxRecordsPerPeer} records already, or its address its share of the store");
                // go and js echo the request as the acknowledgement.
                return request;
            }
            case Message.Types.MessageType.GetValue:
            {
                RequireKey(request);
                var reply = NewReply(request);
                reply.Key = request.Key;
                var stored = records.Get(request.Key.ToByteArray());
                if (stored is not null)
                {
                    reply.Record = new Record
                    {
                        Key = request.Key,
                        Value = ByteString.CopyFrom(stored.Value),
                        TimeReceived = stored.Received.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", System.Globalization.CultureInfo.InvariantCulture),
                    };
                }
                return reply;
            }
            case Message.Types.MessageType.Ping:
                return NewReply(request);
            default:
                throw new KadProtocolException($"unknown message type {(int)request.Type}");
        }
    }

    private static Message NewReply(Message request) => new() { Type = request.Type, ClusterLevelRaw = request.ClusterLevelRaw };

    private static void RequireKey(Message request)
    {
        if (request.Key.IsEmpty) throw new KadProtocolException($"{request.Type} without a key");
    }

    /// <summary>
    /// <paramref name="reply"/> with the peers closest to <paramref name="key"/>, framed as <see cref="LengthPrefixedMessage.RentFrame"/>
    /// frames a message. The peers are written straight from the routing table and peer store, not built as
    /// wire Peers first: every FIND_NODE names k of them, with their addresses, and those objects were most
    /// of what serving a request allocated. Byte for byte what protobuf writes for the whole message: it
    /// writes fields in number order, so closerPeers (8) go after type, key and record (1-3) and before
    /// providerPeers (9) and clusterLevelRaw (10).
    /// </summary>
    /// <param name="reply">The reply without its closer peers; null for one of only the type and cluster level of <paramref name="request"/>.</param>
    private byte[] FrameWithCloserPeers(Message? reply, Message request, ReadOnlySpan<byte> key, PeerId requester, out int length)
    {
        var peers = ArrayPool<CloserPeer>.Shared.Rent(options.K + 1);
        try
        {
            var count = CloserPeers(key, requester, peers);
            Message? tail = null;
            if (reply is not null && (reply.ProviderPeers.Count > 0 || reply.ClusterLevelRaw != 0))
            {
                tail = new Message { ClusterLevelRaw = reply.ClusterLevelRaw };
                tail.ProviderPeers.Add(reply.ProviderPeers);
                reply.ProviderPeers.Clear();
                reply.ClusterLevelRaw = 0;
            }
            // Without a reply: type (field 1) and clusterLevelRaw (10) as protobuf writes them, varints left out when
            // 0 (proto3), a negative int32 sign-extended to ten bytes.
            var type = (ulong)(long)request.Type;
            var clusterLevel = (ulong)(long)request.ClusterLevelRaw;
            var headSize = reply?.CalculateSize() ?? (type == 0 ? 0 : 1 + Varint.GetLength(type));
            var tailSize = tail?.CalculateSize() ?? (reply is not null || clusterLevel == 0 ? 0 : 1 + Varint.GetLength(clusterLevel));
            var size = headSize + tailSize;
            for (var i = 0; i < count; i++) size += 1 + Varint.GetLength((ulong)peers[i].Size) + peers[i].Size;
            var prefix = Varint.GetLength((ulong)size);
            var buffer = ArrayPool<byte>.Shared.Rent(prefix + size);
            var at = Varint.Write(buffer, (ulong)size);
            if (reply is not null) reply.WriteTo(buffer.AsSpan(at, headSize));
            else if (headSize > 0) WriteVarintField(buffer.AsSpan(at), KadReply.MessageTypeTag, type);
            at += headSize;
            for (var i = 0; i < count; i++) at += peers[i].WriteTo(buffer.AsSpan(at));
            if (tail is not null) tail.WriteTo(buffer.AsSpan(at, tailSize));
            else if (tailSize > 0) WriteVarintField(buffer.AsSpan(at), KadReply.ClusterLevelTag, clusterLevel);
            length = prefix + size;
            return buffer;
        }
        finally
        {
            ArrayPool<CloserPeer>.Shared.Return(peers, clearArray: true);
        }
    }

    private static void WriteVarintField(Span<byte> destination, byte tag, ulong value)
    {
        destination[0] = tag;
        Varint.Write(destination[1..], value);
    }

    /// <summary>Fills <paramref name="peers"/> with those a reply names as closest to <paramref name="key"/>; returns how many.</summary>
    private int CloserPeers(ReadOnlySpan<byte> key, PeerId requester, CloserPeer[] peers)
    {
        // Asked for ourselves: we are the exact match (spec: exactly one peer for an exact match).
        if (key.SequenceEqual(host.PeerId.Bytes))
        {
            peers[0] = new CloserPeer(host.PeerId, host.AnnouncedAddresses, options.MaxAddressesPerPeer, connected: true);
            return 1;
        }
        var nearest = ArrayPool<PeerId>.Shared.Rent(options.K);
        try
        {
            var found = routingTable.NearestPeers(KadId.FromKey(key), requester, nearest.AsSpan(0, options.K));
            var count = 0;
            for (var i = 0; i < found; i++)
            {
                var peer = nearest[i];
                var addresses = host.PeerStore.GetAddresses(peer);
                // A peer without addresses is no use to the requester.
                if (addresses.Count == 0) continue;
                peers[count++] = new CloserPeer(peer, addresses, options.MaxAddressesPerPeer, host.GetConnection(peer) is not null);
            }
            return count;
        }
        finally
        {
            ArrayPool<PeerId>.Shared.Return(nearest, clearArray: true);
        }
    }

    /// <summary>One closer peer of a reply, as the wire Peer message <see cref="KadMessageCodec.FromPeer(PeerId, IReadOnlyList{Multiaddress}, int, bool)"/> makes.</summary>
    private readonly struct CloserPeer
    {
        private readonly PeerId _peer;
        private readonly IReadOnlyList<Multiaddress> _addresses;
        private readonly int _addressCount;
        private readonly bool _connected;

        public CloserPeer(PeerId peer, IReadOnlyList<Multiaddress> addresses, int maxAddresses, bool connected)
        {
            _peer = peer;
            _addresses = addresses;
            _addressCount = Math.Min(addresses.Count, maxAddresses);
            _connected = connected;
            var size = BytesField(peer.Bytes.Length);
            for (var i = 0; i < _addressCount; i++) size += 1 + Varint.GetLength((ulong)addresses[i].Bytes.Length) + addresses[i].Bytes.Length;
            // NOT_CONNECTED is the enum's default, which proto3 leaves out.
            if (connected) size += 2;
            Size = size;
        }

        /// <summary>The size of the Peer message, without the closerPeers tag and length before it.</summary>
        public int Size { get; }

        /// <summary>Writes the closerPeers field (tag, length, Peer); returns the bytes written.</summary>
        public int WriteTo(Span<byte> destination)
        {
            destination[0] = KadReply.CloserPeersTag;
            var at = 1 + Varint.Write(destination[1..], (ulong)Size);
            // proto3 leaves out an empty id; a PeerId is never empty, but this keeps the bytes protobuf's.
            if (_peer.Bytes.Length > 0) at += WriteBytes(destination[at..], KadReply.PeerIdTag, _peer.Bytes);
            for (var i = 0; i < _addressCount; i++) at += WriteBytes(destination[at..], KadReply.PeerAddrsTag, _addresses[i].Bytes);
            if (_connected)
            {
                destination[at++] = KadReply.PeerConnectionTag;
                destination[at++] = (byte)Message.Types.ConnectionType.Connected;
            }
            return at;
        }

        private static int BytesField(int length) => length == 0 ? 0 : 1 + Varint.GetLength((ulong)length) + length;

        private static int WriteBytes(Span<byte> destination, byte tag, ReadOnlySpan<byte> bytes)
        {
            destination[0] = tag;
            var at = 1 + Varint.Write(destination[1..], (ulong)bytes.Length);
            bytes.CopyTo(destination[at..]);
            return at + bytes.Length;
        }
    }
}
