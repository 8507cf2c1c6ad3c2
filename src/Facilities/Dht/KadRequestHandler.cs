using Google.Protobuf;
using P2PInference.Facilities.Addressing;
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
        // and closes, so a timer and a linked source per read would double what each stream costs.
        using var idle = new CancellationTokenSource(options.InboundIdleTimeout, options.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        for (var served = 0; served < options.MaxRequestsPerStream; served++)
        {
#pragma warning disable RS0030 // The source runs on options.TimeProvider's timer (created with it above); CancelAfter re-arms that timer.
            if (served > 0) idle.CancelAfter(options.InboundIdleTimeout);
#pragma warning restore RS0030
            Message? request;
            try
            {
                request = await KadMessageCodec.ReadAsync(context.Stream, options.MaxMessageSize, options.MaxKeySize, linked.Token);
            }
            catch (OperationCanceledException) when (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                return;
            }
            if (request is null) return;
            Interlocked.Increment(ref _requestsServed);
            var reply = Handle(remote, request, AddressScopes.Of(context.Connection.RemoteAddress));
            if (reply is null)
            {
                // Nothing to write (ADD_PROVIDER): the timer waits for the next request from the top.
                continue;
            }
            // The same timer bounds writing the reply: a requester that sends requests and never reads the
            // replies fills the stream's window, and the write would then hold this handler until the
            // connection ends.
#pragma warning disable RS0030 // As above: the provider's timer, re-armed.
            idle.CancelAfter(options.ReplyWriteTimeout);
#pragma warning restore RS0030
            try
            {
                await KadMessageCodec.WriteAsync(context.Stream, reply, linked.Token);
            }
            catch (OperationCanceledException e) when (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                // Thrown, so the host resets the stream: part of the reply may be queued on it.
                throw new KadProtocolException($"{remote} did not take the {request.Type} reply within {options.ReplyWriteTimeout}", e);
            }
        }
    }

    /// <summary>Answers one request; null for ADD_PROVIDER, which has no reply on the wire.</summary>
    /// <param name="remote">The sender.</param>
    /// <param name="request">What it asks.</param>
    /// <param name="remoteScope">
    /// The scope of the address we reach the sender at (its connection's remote address): ADD_PROVIDER
    /// keeps only the addresses it may name (<see cref="KadReplyAddresses"/>). Loopback, which keeps them
    /// all, by default.
    /// </param>
    /// <exception cref="KadProtocolException">The request is unacceptable.</exception>
    internal Message? Handle(PeerId remote, Message request, AddressScope remoteScope = AddressScope.Loopback)
    {
        switch (request.Type)
        {
            case Message.Types.MessageType.FindNode:
            {
                var reply = NewReply(request);
                AddCloserPeers(reply, request.Key.Span, remote);
                return reply;
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
                AddCloserPeers(reply, request.Key.Span, remote);
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
                    if (peer.Addresses.Count > 0) host.PeerStore.AddAddresses(remote, peer.Addresses, AddressSource.Self);
                    providers.Add(request.Key.Span, remote, addresses);
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
                if (!records.Put(key, value, remote))
                    throw new KadProtocolException($"record refused: the store is full, or the sender holds its {options.MaxRecordsPerPeer} records already");
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
                AddCloserPeers(reply, request.Key.Span, remote);
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

    private void AddCloserPeers(Message reply, ReadOnlySpan<byte> key, PeerId requester)
    {
        // Asked for ourselves: we are the exact match (spec: exactly one peer for an exact match).
        if (key.SequenceEqual(host.PeerId.Bytes))
        {
            reply.CloserPeers.Add(KadMessageCodec.FromPeer(host.PeerId, host.ListenAddresses, options.MaxAddressesPerPeer, connected: true));
            return;
        }
        var nearest = routingTable.NearestPeers(KadId.FromKey(key), options.K, exclude: requester);
        reply.CloserPeers.Capacity = reply.CloserPeers.Count + nearest.Count;
        foreach (var peer in nearest)
        {
            var addresses = host.PeerStore.GetAddresses(peer);
            // A peer without addresses is no use to the requester.
            if (addresses.Count == 0) continue;
            reply.CloserPeers.Add(KadMessageCodec.FromPeer(peer, addresses, options.MaxAddressesPerPeer, host.GetConnection(peer) is not null));
        }
    }
}
