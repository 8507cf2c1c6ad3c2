using System.Buffers;
using System.Buffers.Binary;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Dht.Proto;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Kademlia DHT over a <see cref="P2PHost"/>, wire-compatible with libp2p kad-dht: peer routing
/// (FIND_NODE), content routing (ADD_PROVIDER / GET_PROVIDERS) and values (PUT_VALUE / GET_VALUE).
/// Topics map to keys with <see cref="TopicKey"/>.
/// </summary>
/// <remarks>
/// Peers enter the routing table when identify shows they serve our kad protocol, or when they
/// answer a kad request; a peer that fails a request is replaced (see <see cref="RoutingTable"/>).
/// Work happens on three timers on the injected <see cref="TimeProvider"/> (refresh, re-announce,
/// sweep), never a thread per peer. libp2p has no message to withdraw a provider record, so
/// unannouncing stops re-announcing and drops our local record; copies elsewhere lapse after
/// <see cref="KademliaDhtOptions.ProviderRecordTtl"/>.
/// </remarks>
public sealed class KademliaDht : IDiscovery, IAsyncDisposable
{
    private readonly P2PHost _host;
    private readonly KademliaDhtOptions _options;
    private readonly ILogger _logger;
    private readonly KadRequestHandler _handler;
    private readonly Random _random;
    private readonly Lock _randomLock = new();
    private readonly OwnProviderRecords _announced = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _joined = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Task> _background = [];
    private readonly List<ITimer> _timers = [];
    private const int RefreshWork = 0, ReannounceWork = 1;
    private readonly int[] _running = new int[2];
    private int _state; // 0 new, 1 started, 2 disposed
    private long _requestsSent;
    private LookupStats _lastLookup = LookupStats.Empty;
    private IDisposable? _retention;

    public KademliaDht(P2PHost host, KademliaDhtOptions options)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _host = host;
        _options = options;
        _logger = options.LoggerFactory.CreateLogger<KademliaDht>();
        RoutingTable = new RoutingTable(host.PeerId, options.K, options.TimeProvider, options.MaxFailuresBeforeEviction, _logger);
        Providers = new ProviderStore(options.TimeProvider, options.ProviderRecordTtl, options.MaxProviderKeys, options.MaxProvidersPerKey, options.MaxKeysPerProvider,
            options.MaxProviderStoreBytes, options.MaxProviderStoreBytesPerOrigin, _logger);
        Records = new RecordStore(options.TimeProvider, options.RecordTtl, options.MaxRecords, options.MaxRecordSize, options.MaxRecordsPerPeer,
            options.MaxRecordStoreBytes, options.MaxRecordStoreBytesPerOrigin);
        _handler = new KadRequestHandler(host, options, RoutingTable, Providers, Records, ConsiderPeer);
        _random = new Random(options.RandomSeed ?? SeedFrom(RoutingTable.LocalId));
        RoutingTable.PeerAdded += _ => _joined.TrySetResult();
        RoutingTable.PeerAdded += ReplicateOwnRecords;
    }

    public PeerId PeerId => _host.PeerId;
    public KademliaDhtOptions Options => _options;
    public RoutingTable RoutingTable { get; }
    public ProviderStore Providers { get; }
    public RecordStore Records { get; }

    /// <summary>Kad requests this node has sent (all lookups, announcements and puts).</summary>
    public long RequestsSent => Interlocked.Read(ref _requestsSent);

    /// <summary>Kad requests this node has answered.</summary>
    public long RequestsServed => _handler.RequestsServed;

    /// <summary>Raised after each timed re-announcement round (also when some announcements failed).</summary>
    public event Action? ReannounceCompleted;

    /// <summary>Raised after each timed routing-table refresh.</summary>
    public event Action? RefreshCompleted;

    /// <summary>The cost of the most recent lookup of any kind.</summary>
    public LookupStats LastLookupStats => Volatile.Read(ref _lastLookup);

    /// <summary>
    /// Serves kad (server mode), adopts already connected kad peers, dials the bootstrap peers and
    /// looks up our own id to fill the routing table, then starts the timers. Unreachable bootstrap
    /// peers are logged, not thrown: the node keeps trying on every refresh.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
            throw new InvalidOperationException("the DHT was already started or disposed");
        if (_options.Mode == DhtMode.Server) _host.Handle(_options.ProtocolId, _handler.HandleStreamAsync);
        _host.PeerStore.ProtocolsUpdated += ConsiderPeer;
        _host.PeerConnected += OnPeerConnected;
        // A flood of identities must not make the node forget its table's peers' addresses; the bucket size bounds
        // them. Bootstrap peers need nothing kept: each rejoin dials the addresses the operator gave.
        _retention = _host.PeerStore.Retain(RoutingTable.Contains);
        foreach (var connection in _host.Connections) ConsiderPeer(connection.RemotePeer);

        await BootstrapAsync(cancellationToken);

        var tp = _options.TimeProvider;
        lock (_timers)
        {
            if (_state != 1) return;
            _timers.Add(tp.CreateTimer(_ => StartBackground(RefreshWork, RefreshAsync), null, _options.RefreshInterval, _options.RefreshInterval));
            var reannounce = _options.EffectiveReannounceInterval;
            _timers.Add(tp.CreateTimer(_ => StartBackground(ReannounceWork, ReannounceAllAsync), null, reannounce, reannounce));
            _timers.Add(tp.CreateTimer(_ => Sweep(), null, _options.SweepInterval, _options.SweepInterval));
        }
    }

    /// <summary>Completes once the routing table has held at least one peer.</summary>
    public Task WaitUntilJoinedAsync(CancellationToken cancellationToken)
    {
        if (RoutingTable.Count > 0) _joined.TrySetResult();
        return _joined.Task.WaitAsync(cancellationToken);
    }

    public async Task AnnounceAsync(string topic, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(topic);
        var key = TopicKey.For(topic);
        _announced.Add(key, topic);
        await ProvideAsync(key, cancellationToken);
    }

    /// <summary>
    /// Stops re-announcing and drops our local provider record. The kad protocol has no withdraw
    /// message, so copies on other nodes live until their TTL runs out.
    /// </summary>
    public Task UnannounceAsync(string topic, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(topic);
        var key = TopicKey.For(topic);
        _announced.Remove(key);
        Providers.Remove(key, PeerId);
        return Task.CompletedTask;
    }

    public async Task<IReadOnlyList<DiscoveredPeer>> LookupAsync(string topic, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(topic);
        var result = await FindProvidersAsync(TopicKey.For(topic), cancellationToken);
        return result.Providers;
    }

    /// <summary>Stores ourselves as a provider of <paramref name="key"/> here and on the k closest peers to it.</summary>
    /// <returns>The cost of finding those peers; how many accepted is not observable (ADD_PROVIDER has no reply).</returns>
    public async Task<LookupStats> ProvideAsync(byte[] key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ThrowIfDisposed();
        Providers.Add(key, PeerId, OwnAddresses());
        IReadOnlyList<PeerId> holders = [];
        _announced.BeginAnnouncement(key);
        try
        {
            var closest = await FindClosestPeersAsync(key, cancellationToken);
            holders = closest.ClosestPeers;
            var message = AddProviderMessage(key);
            await Task.WhenAll(holders.Select(p => SendQuietlyAsync(p, message, cancellationToken)));
            cancellationToken.ThrowIfCancellationRequested();
            return closest.Stats;
        }
        finally
        {
            _announced.EndAnnouncement(key, holders);
        }
    }

    /// <summary>Providers of <paramref name="key"/>: ours first, then an iterative GET_PROVIDERS lookup.</summary>
    public async Task<ProviderLookupResult> FindProvidersAsync(byte[] key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ThrowIfDisposed();
        var found = new Dictionary<PeerId, DiscoveredPeer>();
        var order = new List<PeerId>();
        foreach (var record in Providers.Get(key))
        {
            var addresses = record.Provider == PeerId ? OwnAddresses() : record.Addresses;
            found[record.Provider] = new DiscoveredPeer(record.Provider, addresses.Count > 0 ? addresses : _host.PeerStore.GetAddresses(record.Provider));
            order.Add(record.Provider);
        }
        if (found.Count >= _options.MaxProvidersPerLookup)
            return new ProviderLookupResult(order.Select(p => found[p]).ToArray(), LookupStats.Empty);

        var request = new Message { Type = Message.Types.MessageType.GetProviders, Key = ByteString.CopyFrom(key) };
        KadLookup? lookup = null;
        lookup = NewLookup(KadId.FromKey(key), request, (_, reply, hop) =>
        {
            var taken = 0;
            foreach (var wire in reply.Message.ProviderPeers)
            {
                if (++taken > _options.MaxProvidersPerKey) break;
                var peer = KadMessageCodec.ToPeer(wire, _options.MaxAddressesPerPeer);
                if (peer is null) continue;
                if (peer.Addresses.Count > 0 && peer.PeerId != PeerId)
                    _host.PeerStore.AddAddresses(peer.PeerId, peer.Addresses, AddressSource.ThirdParty, reply.ReplierScope);
                if (found.TryGetValue(peer.PeerId, out var known))
                {
                    if (known.Addresses.Count == 0 && peer.Addresses.Count > 0) found[peer.PeerId] = peer;
                    continue;
                }
                found[peer.PeerId] = peer.Addresses.Count > 0 ? peer : new DiscoveredPeer(peer.PeerId, _host.PeerStore.GetAddresses(peer.PeerId));
                order.Add(peer.PeerId);
                lookup!.MarkResult(hop);
            }
            return found.Count >= _options.MaxProvidersPerLookup;
        });
        var result = await lookup.RunAsync(SeedsFor(KadId.FromKey(key)), cancellationToken);
        return new ProviderLookupResult(order.Select(p => found[p]).ToArray(), Record(result.Stats));
    }

    /// <summary>The k peers closest to <paramref name="key"/> that answered an iterative FIND_NODE.</summary>
    public Task<LookupResult> FindClosestPeersAsync(byte[] key, CancellationToken cancellationToken) =>
        FindClosestPeersAsync(key, extraSeeds: [], cancellationToken);

    /// <summary>Finds <paramref name="peer"/>'s addresses: from a live connection, or an iterative FIND_NODE. Null when not found.</summary>
    public async Task<DiscoveredPeer?> FindPeerAsync(PeerId peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ThrowIfDisposed();
        if (peer == PeerId) return new DiscoveredPeer(PeerId, OwnAddresses());
        if (_host.GetConnection(peer) is not null)
        {
            var known = _host.PeerStore.GetAddresses(peer);
            if (known.Count > 0) return new DiscoveredPeer(peer, known);
        }
        DiscoveredPeer? found = null;
        var request = new Message { Type = Message.Types.MessageType.FindNode, Key = ByteString.CopyFrom(peer.Bytes) };
        KadLookup? lookup = null;
        lookup = NewLookup(KadId.FromPeer(peer), request, (from, reply, hop) =>
        {
            for (var i = 0; i < reply.CloserPeerCount; i++)
            {
                var wire = reply.CloserPeer(i);
                if (!wire.Id.SequenceEqual(peer.Bytes)) continue;
                var candidate = KadMessageCodec.ToPeer(wire, _options.MaxAddressesPerPeer);
                if (candidate is { Addresses.Count: > 0 })
                {
                    found = candidate;
                    lookup!.MarkResult(hop);
                    return true;
                }
            }
            return false;
        });
        var result = await lookup.RunAsync(SeedsFor(KadId.FromPeer(peer)), cancellationToken);
        Record(result.Stats);
        if (found is not null) return found;
        // It may have answered us itself without anyone listing it.
        var addresses = _host.PeerStore.GetAddresses(peer);
        return result.ClosestPeers.Contains(peer) && addresses.Count > 0 ? new DiscoveredPeer(peer, addresses) : null;
    }

    /// <summary>Stores a value here and on the k closest peers; returns how many peers acknowledged it.</summary>
    /// <exception cref="ArgumentException">The value exceeds <see cref="KademliaDhtOptions.MaxRecordSize"/> or the validator rejects it.</exception>
    public async Task<int> PutValueAsync(byte[] key, byte[] value, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        ThrowIfDisposed();
        if (key.Length == 0 || key.Length > _options.MaxKeySize) throw new ArgumentException("key is empty or too long", nameof(key));
        if (value.Length > _options.MaxRecordSize) throw new ArgumentException($"value exceeds {_options.MaxRecordSize} bytes", nameof(value));
        if (!_options.RecordValidator(key, value)) throw new ArgumentException("the record validator rejects this value", nameof(value));
        Records.Put(key, value);
        var closest = await FindClosestPeersAsync(key, cancellationToken);
        var message = new Message
        {
            Type = Message.Types.MessageType.PutValue,
            Key = ByteString.CopyFrom(key),
            Record = new Proto.Record { Key = ByteString.CopyFrom(key), Value = ByteString.CopyFrom(value) },
        };
        var acks = await Task.WhenAll(closest.ClosestPeers.Select(async p =>
        {
            try
            {
                using var timeout = new CancellationTokenSource(_options.QueryTimeout, _options.TimeProvider);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token, _stopping.Token);
                using var reply = await RequestAsync(p, message, linked.Token);
                return reply is null ? 0 : 1;
            }
            catch (Exception e) when (e is not OutOfMemoryException && !cancellationToken.IsCancellationRequested)
            {
                _logger.LogDebug(e, "PUT_VALUE to {Peer} failed", p);
                return 0;
            }
        }));
        return acks.Sum();
    }

    /// <summary>A value for <paramref name="key"/>: ours, or the first valid one an iterative GET_VALUE finds. Null when none.</summary>
    public async Task<byte[]?> GetValueAsync(byte[] key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ThrowIfDisposed();
        var local = Records.Get(key);
        if (local is not null) return local.Value;
        byte[]? value = null;
        var request = new Message { Type = Message.Types.MessageType.GetValue, Key = ByteString.CopyFrom(key) };
        KadLookup? lookup = null;
        lookup = NewLookup(KadId.FromKey(key), request, (_, reply, hop) =>
        {
            var record = reply.Message.Record;
            if (record is null || !record.Key.Span.SequenceEqual(key) || record.Value.Length > _options.MaxRecordSize) return false;
            var candidate = record.Value.ToByteArray();
            if (!_options.RecordValidator(key, candidate)) return false;
            value = candidate;
            lookup!.MarkResult(hop);
            return true;
        });
        var result = await lookup.RunAsync(SeedsFor(KadId.FromKey(key)), cancellationToken);
        Record(result.Stats);
        return value;
    }

    private async Task<LookupResult> FindClosestPeersAsync(byte[] key, IEnumerable<PeerId> extraSeeds, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ThrowIfDisposed();
        return await RunFindNodeAsync(key, extraSeeds, static (_, _, _) => false, alpha: null, cancellationToken);
    }

    /// <summary>An iterative FIND_NODE for <paramref name="key"/>, ended early when <paramref name="stopWhen"/> says so; its stats recorded.</summary>
    private async Task<LookupResult> RunFindNodeAsync(byte[] key, IEnumerable<PeerId> extraSeeds, Func<PeerId, KadReply, int, bool> stopWhen, int? alpha,
        CancellationToken cancellationToken)
    {
        var target = KadId.FromKey(key);
        var request = new Message { Type = Message.Types.MessageType.FindNode, Key = ByteString.CopyFrom(key) };
        var lookup = NewLookup(target, request, stopWhen, alpha);
        var result = await lookup.RunAsync(SeedsFor(target).Concat(extraSeeds), cancellationToken);
        Record(result.Stats);
        return result;
    }

    private KadLookup NewLookup(KadId target, Message request, Func<PeerId, KadReply, int, bool> onResponse, int? alpha = null) =>
        new(target, PeerId, _options,
            (peer, ct) => RequestAsync(peer, request, ct),
            onResponse,
            OnQueryOutcome,
            (peer, replierScope) =>
            {
                // A name among them may resolve, when dialed, only within the scope the replier was reached at.
                if (peer.Addresses.Count > 0) _host.PeerStore.AddAddresses(peer.PeerId, peer.Addresses, AddressSource.ThirdParty, replierScope);
            },
            alpha);

    private IEnumerable<PeerId> SeedsFor(KadId target) => RoutingTable.NearestPeers(target, _options.K);

    /// <summary>Sends one request on a fresh stream and returns the reply of the same type, which the caller disposes; null when no stream could be opened.</summary>
    /// <remarks>
    /// <para>
    /// A peer that cannot be reached (gone, refusing, serving no kad) or a request cancelled before its
    /// stream opened (the lookup finished) is routine in a lookup, so it is a null reply, not an exception
    /// rethrown through every frame on the way. Failures on an open stream still throw.
    /// </para>
    /// <para>
    /// The protocol is negotiated lazily: the proposal and the request leave in one write and the
    /// listener's answer comes back with the reply, so a request costs one round trip instead of two
    /// (a lookup's depth in round trips is halved). The request is therefore on its way before the
    /// listener has accepted the stream; every request with a reply is idempotent, so one that meets a
    /// connection closing under it (the remote closed it as idle as the request arrived) is sent once
    /// more on a connection dialed anew, as a stream that failed to open was before.
    /// </para>
    /// </remarks>
    private async Task<KadReply?> RequestAsync(PeerId peer, Message request, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _requestsSent);
        var frame = LengthPrefixedMessage.RentFrame(request, out var length);
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                var (stream, connection, error) = await _host.TryOpenStreamLazyAsync(peer, _options.ProtocolId, frame.AsMemory(0, length), cancellationToken);
                if (stream is null)
                {
                    _logger.LogDebug(error, "{Type} to {Peer}: no stream", request.Type, peer);
                    return null;
                }
                await using (stream)
                {
                    try
                    {
                        await _host.ReadLazyAnswerAsync(stream, _options.ProtocolId, cancellationToken);
                        var reply = await KadReply.ReadAsync(stream, _options.MaxMessageSize, _options.MaxKeySize, connection!.RemoteScope,
                                cancellationToken)
                            ?? throw new KadProtocolException($"{peer} closed the stream without answering {request.Type}");
                        if (reply.Message.Type != request.Type)
                        {
                            reply.Dispose();
                            throw new KadProtocolException($"{peer} answered {request.Type} with {reply.Message.Type}");
                        }
                        return reply;
                    }
                    catch (MultistreamException e) when (e.Reason == MultistreamFailure.NoProtocolSupported)
                    {
                        // It read no request: as a stream that could not be opened.
                        _logger.LogDebug(e, "{Type} to {Peer}: no stream", request.Type, peer);
                        return null;
                    }
                    catch (Exception e) when (attempt == 0 && stream.IsSessionClosed && !cancellationToken.IsCancellationRequested && e is not OutOfMemoryException)
                    {
                        stream.Reset();
                        _logger.LogDebug(e, "{Type} to {Peer}: the connection closed under the request; sending it once more", request.Type, peer);
                    }
                    catch
                    {
                        stream.Reset();
                        throw;
                    }
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(frame);
        }
    }

    /// <summary>Sends a message that has no reply (ADD_PROVIDER); failures are logged, not thrown.</summary>
    private async Task SendQuietlyAsync(PeerId peer, Message message, CancellationToken cancellationToken)
    {
        try
        {
            using var timeout = new CancellationTokenSource(_options.QueryTimeout, _options.TimeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token, _stopping.Token);
            Interlocked.Increment(ref _requestsSent);
            var (stream, error) = await _host.TryOpenStreamAsync(peer, _options.ProtocolId, linked.Token);
            if (stream is null)
            {
                _logger.LogDebug(error, "{Type} to {Peer} failed", message.Type, peer);
                return;
            }
            await using (stream)
                await KadMessageCodec.WriteAsync(stream, message, linked.Token);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _logger.LogDebug(e, "{Type} to {Peer} failed", message.Type, peer);
        }
    }

    private void OnQueryOutcome(PeerId peer, bool answered)
    {
        if (answered) RoutingTable.TryAdd(peer);
        else RoutingTable.MarkFailed(peer);
    }

    private void OnPeerConnected(PeerConnection connection) => ConsiderPeer(connection.RemotePeer);

    /// <summary>Adds a peer whose identify lists our kad protocol; drops one that stopped listing it (it became a client).</summary>
    private void ConsiderPeer(PeerId peer)
    {
        if (_state != 1) return;
        var protocols = _host.PeerStore.GetProtocols(peer);
        if (protocols.Count == 0) return;
        if (protocols.Contains(_options.ProtocolId, StringComparer.Ordinal)) RoutingTable.TryAdd(peer);
        else RoutingTable.Remove(peer);
    }

    private async Task BootstrapAsync(CancellationToken cancellationToken)
    {
        var reached = new List<PeerId>();
        await Task.WhenAll(_options.BootstrapPeers.Select(async address =>
        {
            try
            {
                using var timeout = new CancellationTokenSource(_options.QueryTimeout, _options.TimeProvider);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token, _stopping.Token);
                var connection = await _host.ConnectAsync(address, linked.Token);
                lock (reached) reached.Add(connection.RemotePeer);
            }
            catch (Exception e) when (e is not OutOfMemoryException && !cancellationToken.IsCancellationRequested)
            {
                _logger.LogWarning("bootstrap peer {Address} unreachable: {Error}", address, e.Message);
            }
        }));
        try
        {
            // Bootstrap peers seed the self lookup directly: identify may not have put them in the table yet.
            await FindClosestPeersAsync(PeerId.ToByteArray(), reached, cancellationToken);
            await RefreshEmptyBucketsAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OutOfMemoryException && !cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning(e, "bootstrap lookup failed");
        }
    }

    private async Task RefreshAsync(CancellationToken cancellationToken)
    {
        if (RoutingTable.Count == 0)
        {
            await BootstrapAsync(cancellationToken);
            EventSubscribers.Raise(RefreshCompleted, _logger, $"{nameof(KademliaDht)}.{nameof(RefreshCompleted)}");
            return;
        }
        await FindClosestPeersAsync(PeerId.ToByteArray(), cancellationToken);
        // A random target reaches buckets the self lookup does not (spec: bootstrap process).
        var random = new byte[32];
        lock (_randomLock) _random.NextBytes(random);
        await RunFindNodeAsync(random, [], static (_, _, _) => false, alpha: null, cancellationToken);
        await RefreshEmptyBucketsAsync(cancellationToken);
        EventSubscribers.Raise(RefreshCompleted, _logger, $"{nameof(KademliaDht)}.{nameof(RefreshCompleted)}");
    }

    /// <summary>
    /// Looks up a key in each bucket farther than our closest neighbour that holds no peer: the Kademlia
    /// paper's join step (it refreshes every such bucket; the empty ones are what lookups need).
    /// </summary>
    /// <remarks>
    /// A self lookup only meets peers on the way to our own id. A node whose bootstrap peers all share
    /// its first bit learns no one from the other half of the id space, and neither do the nodes that
    /// join through the same peers after it: a whole half then knows no one in the other, and every
    /// lookup it starts for a key over there converges on its own side and misses the providers (a
    /// 300-peer simulation lost 2 of 60 lookups in a healthy network so, for about one seed in eight).
    /// One peer in each bucket is enough to cross. A FIND_NODE key is hashed into the id space, so a
    /// key that lands in bucket i is found by trying random ones: about 2^(i+1) SHA-256s, for buckets
    /// up to <see cref="MaxRefreshedBucket"/>.
    /// </remarks>
    private async Task RefreshEmptyBucketsAsync(CancellationToken cancellationToken)
    {
        for (var bucket = 0; bucket < MaxRefreshedBucket; bucket++)
        {
            var filled = RoutingTable.NonEmptyBuckets();
            if (filled.Count == 0 || bucket >= filled[^1]) return;
            if (filled.Contains(bucket)) continue;
            // Done at the first answer from a peer in the bucket (answering put it in the table): one is
            // enough to cross. Three requests at a time, the paper's alpha: the first answers usually
            // name peers in the bucket already, and converging on the k closest with ten at a time cost
            // the 1,000-peer simulation's bootstrap twice the requests.
            var bucketIndex = bucket;
            await RunFindNodeAsync(KeyInBucket(bucket), [], (peer, _, _) => RoutingTable.BucketIndexOf(KadId.FromPeer(peer)) == bucketIndex, alpha: 3,
                cancellationToken);
        }
    }

    private const int MaxRefreshedBucket = 16;

    /// <summary>A random key whose kad id shares exactly <paramref name="bucket"/> leading bits with ours.</summary>
    private byte[] KeyInBucket(int bucket)
    {
        lock (_randomLock) return BucketKeys.For(RoutingTable.LocalId, bucket, _random);
    }

    private Message AddProviderMessage(byte[] key)
    {
        var message = new Message { Type = Message.Types.MessageType.AddProvider, Key = ByteString.CopyFrom(key) };
        message.ProviderPeers.Add(KadMessageCodec.FromPeer(PeerId, OwnAddresses(), connected: true));
        return message;
    }

    /// <summary>
    /// A peer entered the routing table: if it is among the k closest we know to a key we provide,
    /// it gets our record now rather than at the next re-announcement (see <see cref="OwnProviderRecords"/>).
    /// </summary>
    private void ReplicateOwnRecords(PeerId peer)
    {
        if (_state != 1) return;
        var keys = _announced.ClaimKeysFor(peer, RoutingTable, _options.K);
        if (keys.Count == 0) return;
        Track(ReplicateAsync(peer, keys));
    }

    private async Task ReplicateAsync(PeerId peer, IReadOnlyList<byte[]> keys)
    {
        // Off the caller's stack: PeerAdded is raised inside identify and lookup callbacks.
        await Task.Yield();
        try
        {
            foreach (var key in keys)
            {
                if (_stopping.IsCancellationRequested) return;
                await SendQuietlyAsync(peer, AddProviderMessage(key), _stopping.Token);
            }
        }
        catch (ObjectDisposedException) when (_state == 2)
        {
            // Disposed between the state check and the send: nothing left to replicate to.
        }
    }

    private async Task ReannounceAllAsync(CancellationToken cancellationToken)
    {
        foreach (var key in _announced.Keys)
        {
            if (!_announced.Contains(key)) continue;
            try
            {
                await ProvideAsync(key, cancellationToken);
            }
            catch (Exception e) when (e is not OutOfMemoryException && !cancellationToken.IsCancellationRequested)
            {
                _logger.LogWarning(e, "re-announcing a provider record failed");
            }
        }
        EventSubscribers.Raise(ReannounceCompleted, _logger, $"{nameof(KademliaDht)}.{nameof(ReannounceCompleted)}");
    }

    private void Sweep()
    {
        Providers.Sweep();
        Records.Sweep();
    }

    /// <summary>Runs timer work in the background, one run at a time per kind; a tick during a run is skipped.</summary>
    private void StartBackground(int kind, Func<CancellationToken, Task> work)
    {
        if (_state != 1 || Interlocked.CompareExchange(ref _running[kind], 1, 0) != 0) return;
        Track(RunBackgroundAsync(kind, work));
    }

    private void Track(Task task)
    {
        lock (_background)
        {
            _background.RemoveAll(t => t.IsCompleted);
            _background.Add(task);
        }
    }

    private async Task RunBackgroundAsync(int kind, Func<CancellationToken, Task> work)
    {
        await Task.Yield();
        try
        {
            await work(_stopping.Token);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (!_stopping.IsCancellationRequested) _logger.LogWarning(e, "DHT background work failed");
        }
        finally
        {
            Volatile.Write(ref _running[kind], 0);
        }
    }

    private IReadOnlyList<Multiaddress> OwnAddresses() => _host.AnnouncedAddresses.Take(_options.MaxAddressesPerPeer).ToArray();

    private LookupStats Record(LookupStats stats)
    {
        Volatile.Write(ref _lastLookup, stats);
        return stats;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_state == 2, this);

    private static int SeedFrom(KadId id)
    {
        Span<byte> bytes = stackalloc byte[32];
        id.WriteTo(bytes);
        return BinaryPrimitives.ReadInt32BigEndian(bytes);
    }

    /// <summary>Graceful stop: timers stop, our records are withdrawn locally, the protocol is unregistered, background work ends.</summary>
    public async ValueTask DisposeAsync()
    {
        var previous = Interlocked.Exchange(ref _state, 2);
        if (previous == 2) return;
        ITimer[] timers;
        lock (_timers)
        {
            timers = _timers.ToArray();
            _timers.Clear();
        }
        foreach (var timer in timers) await timer.DisposeAsync();
        _stopping.Cancel();
        foreach (var topic in _announced.Topics) await UnannounceAsync(topic, CancellationToken.None);
        if (previous == 1)
        {
            _host.PeerStore.ProtocolsUpdated -= ConsiderPeer;
            _host.PeerConnected -= OnPeerConnected;
            _retention?.Dispose();
            if (_options.Mode == DhtMode.Server) _host.Unhandle(_options.ProtocolId);
        }
        Task[] pending;
        lock (_background) pending = _background.ToArray();
        await Task.WhenAll(pending);
        _stopping.Dispose();
    }
}
