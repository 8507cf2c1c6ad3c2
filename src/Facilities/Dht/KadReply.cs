using System.Buffers;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Dht.Proto;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// A kad reply as a lookup takes it: everything but the closer peers as a protobuf <see cref="Proto.Message"/>,
/// the closer peers as slices of the received bytes (<see cref="KadWirePeer"/>). Replies overlap heavily, so
/// most peers they name are ones the lookup has learned already; as slices, those cost a comparison, not a
/// Peer, a ByteString and a copy per id and address.
/// </summary>
/// <remarks>
/// The reader accepts exactly what Google.Protobuf's parser of <see cref="Proto.Message"/> accepts (tags,
/// varints, lengths, groups, the end-group rule and recursion limit), so garbage still ends in a
/// <see cref="MalformedMessageException"/>; the fields it does not read itself are parsed by that parser.
/// Closer peers' addresses are restricted as they are read, by the rule of <see cref="KadReplyAddresses"/>.
/// A reply read off a stream holds its bytes and their index in pooled arrays until <see cref="Dispose"/>; one
/// never disposed leaves them to the collector. Its closer peers must not be read after it is disposed.
/// </remarks>
internal sealed class KadReply : IDisposable
{
    // Google.Protobuf's default, which the generated parser applies to groups and nested messages.
    private const int RecursionLimit = 100;
    // dht.proto's wire tags, which the handler's reply writer uses too: Message.closerPeers, Peer.id, Peer.addrs, Peer.connection,
    // and the varints around a FIND_NODE reply's closer peers, Message.type and Message.clusterLevelRaw.
    internal const byte CloserPeersTag = (8 << 3) | 2;
    internal const byte PeerIdTag = (1 << 3) | 2;
    internal const byte PeerAddrsTag = (2 << 3) | 2;
    internal const byte PeerConnectionTag = 3 << 3;
    internal const byte MessageTypeTag = 1 << 3;
    internal const byte ClusterLevelTag = 10 << 3;

    private byte[]? _body;
    // Whether _body is rented (a reply read off a stream), to go back to the pool on Dispose.
    private readonly bool _bodyRented;
    // Index of each closer peer's entry in _slices, in the first CloserPeerCount items; rented when not empty.
    private int[]? _peerAt;
    // Per closer peer: id offset, id length, kept address count, then offset and length of each kept address; rented when not empty.
    private int[]? _slices;

    private KadReply(Message message, byte[] body, bool bodyRented, int[] peerAt, int peerCount, int[] slices, AddressScope replierScope)
    {
        Message = message;
        ReplierScope = replierScope;
        _body = body;
        _bodyRented = bodyRented;
        _peerAt = peerAt;
        CloserPeerCount = peerCount;
        _slices = slices;
    }

    /// <summary>The reply without its closer peers (those are <see cref="CloserPeer"/>); provider peers restricted.</summary>
    public Message Message { get; }

    public int CloserPeerCount { get; }

    /// <summary>
    /// The scope of the address the replier was reached at: what its addresses were restricted to, and the narrowest
    /// scope a name among them may resolve to when we dial it (<see cref="Net.Host.PeerStore.NarrowestDialScope"/>).
    /// </summary>
    public AddressScope ReplierScope { get; }

    public KadWirePeer CloserPeer(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)CloserPeerCount, nameof(index));
        ObjectDisposedException.ThrowIf(_body is null, this);
        return new(_body, _slices!, _peerAt![index]);
    }

    /// <summary>Returns the pooled arrays; <see cref="Message"/> stays usable, the closer peers do not.</summary>
    public void Dispose()
    {
        // Once only, even when two owners race (a late reply and the lookup's drain): the arrays go back once.
        var body = Interlocked.Exchange(ref _body, null);
        if (body is null) return;
        if (_bodyRented) ArrayPool<byte>.Shared.Return(body);
        if (_peerAt!.Length > 0) ArrayPool<int>.Shared.Return(_peerAt);
        if (_slices!.Length > 0) ArrayPool<int>.Shared.Return(_slices);
        _peerAt = null;
        _slices = null;
    }

    /// <summary>Reads one reply; null when the stream ends cleanly before it.</summary>
    /// <exception cref="MessageTooLargeException">The prefix announces more than <paramref name="maxMessageSize"/>.</exception>
    /// <exception cref="MalformedMessageException">The prefix or the protobuf is malformed.</exception>
    /// <exception cref="KadProtocolException">The message has an unknown type or an oversized key.</exception>
    /// <exception cref="EndOfStreamException">The stream ended inside the message.</exception>
    public static async ValueTask<KadReply?> ReadAsync(Stream stream, int maxMessageSize, int maxKeySize, AddressScope replierScope,
        CancellationToken cancellationToken)
    {
        // Kept whole, until the reply is disposed: the closer peers are slices of it.
        var (body, length) = await LengthPrefixedMessage.ReadRentedAsync(stream, maxMessageSize, cancellationToken);
        if (body is null) return null;
        try
        {
            return Parse(body, length, bodyRented: true, maxKeySize, replierScope);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(body);
            throw;
        }
    }

    /// <summary>Parses one reply body (no length prefix), which it keeps, and validates it like <see cref="ReadAsync"/>.</summary>
    /// <param name="body">The body; the reply refers to it, so it must not change afterwards.</param>
    /// <param name="maxKeySize">Longest key accepted.</param>
    /// <param name="replierScope">The scope of the address the replier was reached at (<see cref="KadReplyAddresses"/>).</param>
    public static KadReply Parse(byte[] body, int maxKeySize, AddressScope replierScope)
    {
        ArgumentNullException.ThrowIfNull(body);
        return Parse(body, body.Length, bodyRented: false, maxKeySize, replierScope);
    }

    /// <summary>Parses the first <paramref name="bodyLength"/> bytes of <paramref name="body"/>; the reply owns a rented body only when it is returned.</summary>
    private static KadReply Parse(byte[] body, int bodyLength, bool bodyRented, int maxKeySize, AddressScope replierScope)
    {
        // Sized for k = 20 peers with an address or two each (about 7 slices a peer), so neither grows.
        var peerAt = new IntList(32);
        var slices = new IntList(256);
        byte[]? rest = null;
        try
        {
            var restLength = 0;
            var reader = new WireReader(body, 0, bodyLength);
            while (true)
            {
                var start = reader.Position;
                var tag = reader.ReadTag();
                if (tag == 0) break;
                if (tag == CloserPeersTag)
                {
                    var length = reader.ReadLength();
                    peerAt.Add(slices.Count);
                    ReadPeer(new WireReader(body, reader.Position, length), replierScope, ref slices);
                    reader.Skip(length);
                    if (rest is null)
                    {
                        rest = ArrayPool<byte>.Shared.Rent(bodyLength);
                        body.AsSpan(0, start).CopyTo(rest);
                        restLength = start;
                    }
                    continue;
                }
                reader.SkipField(tag, depth: 0);
                if (rest is not null)
                {
                    body.AsSpan(start, reader.Position - start).CopyTo(rest.AsSpan(restLength));
                    restLength += reader.Position - start;
                }
            }
            var message = LengthPrefixedMessage.Parse(Message.Parser, rest is null ? body.AsSpan(0, bodyLength) : rest.AsSpan(0, restLength));
            KadMessageCodec.Validate(message, maxKeySize);
            foreach (var provider in message.ProviderPeers) KadReplyAddresses.Restrict(provider, replierScope);
            // The index arrays pass to the reply as they are, so the lists below have nothing left to return.
            var peerCount = peerAt.Count;
            return new KadReply(message, body, bodyRented, peerAt.Detach(), peerCount, slices.Detach(), replierScope);
        }
        finally
        {
            if (rest is not null) ArrayPool<byte>.Shared.Return(rest);
            peerAt.Dispose();
            slices.Dispose();
        }
    }

    /// <summary>Reads one Peer (id, addrs, connection), recording its id and the addresses it may name.</summary>
    private static void ReadPeer(WireReader reader, AddressScope replierScope, ref IntList slices)
    {
        var entry = slices.Count;
        slices.Add(0);
        slices.Add(0);
        slices.Add(0);
        var kept = 0;
        while (true)
        {
            var tag = reader.ReadTag();
            if (tag == 0) break;
            switch (tag)
            {
                case PeerIdTag:
                {
                    // A repeated id replaces the earlier one, as the generated parser does.
                    var length = reader.ReadLength();
                    slices[entry] = reader.Position;
                    slices[entry + 1] = length;
                    reader.Skip(length);
                    break;
                }
                case PeerAddrsTag:
                {
                    var length = reader.ReadLength();
                    var at = reader.Position;
                    reader.Skip(length);
                    // The first MaxAddressesPerNamedPeer it may name, as KadReplyAddresses keeps of a parsed Peer.
                    if (kept < KadReplyAddresses.MaxAddressesPerNamedPeer && NamedAddresses.MayName(replierScope, reader.Slice(at, length)))
                    {
                        slices.Add(at);
                        slices.Add(length);
                        kept++;
                    }
                    break;
                }
                case PeerConnectionTag:
                    reader.ReadVarint32();
                    break;
                default:
                    // A nested message is one level down.
                    reader.SkipField(tag, depth: 1);
                    break;
            }
        }
        slices[entry + 2] = kept;
    }

    private static MalformedMessageException Malformed(string what) => new($"malformed Message message: {what}");

    /// <summary>Protobuf wire reading over a region of a buffer, with Google.Protobuf's acceptance rules.</summary>
    private ref struct WireReader(byte[] buffer, int start, int length)
    {
        private readonly ReadOnlySpan<byte> _buffer = buffer.AsSpan(0, start + length);

        public int Position { get; private set; } = start;

        public readonly ReadOnlySpan<byte> Slice(int at, int length) => _buffer.Slice(at, length);

        /// <summary>The next tag; 0 at the end of the region.</summary>
        public uint ReadTag()
        {
            if (Position == _buffer.Length) return 0;
            var tag = ReadVarint32();
            if (tag >> 3 == 0) throw Malformed("invalid tag (zero)");
            return tag;
        }

        /// <summary>A length-delimited field's length, which must lie within the region.</summary>
        public int ReadLength()
        {
            var length = (int)ReadVarint32();
            if (length < 0) throw Malformed("negative size");
            if (length > _buffer.Length - Position) throw Malformed("truncated");
            return length;
        }

        public void Skip(int length) => Position += length;

        /// <summary>Up to ten bytes, of which the low 32 bits count; longer is malformed.</summary>
        public uint ReadVarint32()
        {
            uint result = 0;
            for (var i = 0; i < 10; i++)
            {
                if (Position == _buffer.Length) throw Malformed("truncated");
                var b = _buffer[Position++];
                if (i < 5) result |= (uint)(b & 0x7f) << (7 * i);
                if (b < 0x80) return result;
            }
            throw Malformed("malformed varint");
        }

        /// <summary>Skips the field <paramref name="tag"/> introduced, as the generated parser skips an unknown field.</summary>
        public void SkipField(uint tag, int depth)
        {
            switch (tag & 7)
            {
                case 0:
                    ReadVarint32();
                    break;
                case 1:
                    SkipFixed(8);
                    break;
                case 2:
                    Skip(ReadLength());
                    break;
                case 3:
                {
                    if (depth >= RecursionLimit) throw Malformed("recursion limit exceeded");
                    while (true)
                    {
                        var inner = ReadTag();
                        if (inner == 0) throw Malformed("group not ended");
                        if ((inner & 7) == 4)
                        {
                            if (inner >> 3 != tag >> 3) throw Malformed("mismatched end-group tag");
                            break;
                        }
                        SkipField(inner, depth + 1);
                    }
                    break;
                }
                case 4:
                    throw Malformed("end-group tag without a group");
                case 5:
                    SkipFixed(4);
                    break;
                default:
                    throw Malformed("invalid wire type");
            }
        }

        private void SkipFixed(int size)
        {
            if (size > _buffer.Length - Position) throw Malformed("truncated");
            Position += size;
        }
    }

    /// <summary>A growing list of ints on pooled arrays, for the one pass over a reply.</summary>
    private struct IntList(int initialCapacity) : IDisposable
    {
        private int[]? _items;

        public int Count { get; private set; }

        public readonly ref int this[int index] => ref _items![index];

        public void Add(int value)
        {
            if (_items is null || Count == _items.Length)
            {
                var larger = ArrayPool<int>.Shared.Rent(Math.Max(Math.Max(initialCapacity, 16), Count * 2));
                if (_items is not null)
                {
                    _items.AsSpan(0, Count).CopyTo(larger);
                    ArrayPool<int>.Shared.Return(_items);
                }
                _items = larger;
            }
            _items[Count++] = value;
        }

        /// <summary>The rented array holding the items (empty when there are none), which the caller now returns.</summary>
        public int[] Detach()
        {
            var items = _items ?? [];
            _items = null;
            Count = 0;
            return items;
        }

        public void Dispose()
        {
            if (_items is not null) ArrayPool<int>.Shared.Return(_items);
            _items = null;
        }
    }
}

/// <summary>
/// One closer peer of a <see cref="KadReply"/>: its id and the addresses kept of it, as slices of the reply.
/// A ref struct, so it cannot be stored: the reply's pooled arrays go back to the pool when it is disposed.
/// </summary>
internal readonly ref struct KadWirePeer
{
    private readonly byte[] _body;
    private readonly int[] _slices;
    private readonly int _at;

    internal KadWirePeer(byte[] body, int[] slices, int at)
    {
        _body = body;
        _slices = slices;
        _at = at;
    }

    public ReadOnlySpan<byte> Id => _body.AsSpan(_slices[_at], _slices[_at + 1]);

    public int AddressCount => _slices[_at + 2];

    public ReadOnlySpan<byte> Address(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)AddressCount, nameof(index));
        return _body.AsSpan(_slices[_at + 3 + 2 * index], _slices[_at + 4 + 2 * index]);
    }
}
