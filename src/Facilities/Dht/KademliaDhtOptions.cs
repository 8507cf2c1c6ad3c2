using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Dht;

/// <summary>How a <see cref="KademliaDht"/> behaves. Defaults follow the libp2p spec where it has one.</summary>
public sealed class KademliaDhtOptions
{
    public const string DefaultProtocolId = "/p2pinference/kad/1.0.0";

    /// <summary>The kad protocol id; <c>/ipfs/kad/1.0.0</c> joins the public IPFS DHT's wire protocol.</summary>
    public string ProtocolId { get; init; } = DefaultProtocolId;

    /// <summary>Replication parameter: bucket size, and how many closest peers a lookup converges on.</summary>
    public int K { get; init; } = 20;

    /// <summary>Requests in flight per lookup (the design asks for 10; the spec's default is 3).</summary>
    public int Alpha { get; init; } = 10;

    public DhtMode Mode { get; init; } = DhtMode.Server;

    /// <summary>Peers dialed at start; each must end in <c>/p2p/&lt;PeerId&gt;</c>.</summary>
    public IReadOnlyList<Multiaddress> BootstrapPeers { get; init; } = [];

    /// <summary>
    /// How long a provider record lives on the nodes that store it. Far below the spec's 24 h so a
    /// crashed worker stops being found within minutes (docs/architecture.md).
    /// </summary>
    public TimeSpan ProviderRecordTtl { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>How often our own provider records are re-announced; must be below the TTL.</summary>
    public TimeSpan? ReannounceInterval { get; init; }

    public TimeSpan EffectiveReannounceInterval => ReannounceInterval ?? ProviderRecordTtl / 2;

    /// <summary>How long a PUT_VALUE record lives in the store that received it.</summary>
    public TimeSpan RecordTtl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Routing-table refresh (random and self lookups); the spec's default is 5 minutes.</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>How often expired provider records and values are swept from memory.</summary>
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>One request: dial, stream negotiation, send and reply.</summary>
    public TimeSpan QueryTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A whole iterative lookup; past it the lookup answers with what it has found.</summary>
    public TimeSpan LookupTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>An inbound kad stream with no request for this long is closed.</summary>
    public TimeSpan InboundIdleTimeout { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long the server may wait to write one reply (a requester that does not read fills the stream's
    /// window); past it the stream is reset. Longer than a requester waits for a reply (<see cref="QueryTimeout"/>).
    /// </summary>
    public TimeSpan ReplyWriteTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Failed requests in a row after which a routing-table peer is replaced.</summary>
    public int MaxFailuresBeforeEviction { get; init; } = 1;

    /// <summary>A provider lookup stops early once it has this many providers.</summary>
    public int MaxProvidersPerLookup { get; init; } = 20;

    public int MaxProvidersPerKey { get; init; } = 64;
    public int MaxProviderKeys { get; init; } = 100_000;

    /// <summary>
    /// An estimate of the memory the provider store may take, keys, records and their addresses together;
    /// past it new records are refused. Identities cost nothing, so the per-key and per-provider counts
    /// alone would let a flood of them fill gigabytes.
    /// </summary>
    public long MaxProviderStoreBytes { get; init; } = ProviderStore.DefaultMaxBytes;

    /// <summary>Keys one provider may hold records for in this node's store; past it, its new keys are refused (renewals are not).</summary>
    public int MaxKeysPerProvider { get; init; } = ProviderStore.DefaultMaxKeysPerProvider;
    public int MaxRecords { get; init; } = 10_000;

    /// <summary>An estimate of the memory the PUT_VALUE store may take; past it new values are refused.</summary>
    public long MaxRecordStoreBytes { get; init; } = RecordStore.DefaultMaxBytes;

    /// <summary>
    /// The part of each store's byte budget (<see cref="MaxProviderStoreBytes"/>, <see cref="MaxRecordStoreBytes"/>)
    /// the records from one origin may take: one IPv4 address or IPv6 /64 (<see cref="Addressing.AddressOrigin"/>).
    /// Identities cost nothing, so without it one machine cycling them fills a store and honest records are
    /// refused until the flood's expire; with a sixteenth, filling one takes sixteen such addresses. Loopback
    /// peers, and inbound peers under <see cref="Net.Host.HostOptions.InboundPeersArePublic"/> (whose address is a
    /// proxy's), are not counted. 1 turns it off.
    /// </summary>
    public double MaxStoreSharePerOrigin { get; init; } = 1.0 / 16;

    internal long MaxProviderStoreBytesPerOrigin => ShareOf(MaxProviderStoreBytes);
    internal long MaxRecordStoreBytesPerOrigin => ShareOf(MaxRecordStoreBytes);
    private long ShareOf(long budget) => Math.Max(1, (long)(budget * MaxStoreSharePerOrigin));

    /// <summary>PUT_VALUE records one peer may hold in this node's store; past it, its new keys are refused (updates of its own are not).</summary>
    public int MaxRecordsPerPeer { get; init; } = RecordStore.DefaultMaxRecordsPerPeer;

    /// <summary>Largest record value accepted by PUT_VALUE (and sent by us).</summary>
    public int MaxRecordSize { get; init; } = 16 * 1024;

    /// <summary>Largest kad message read; go and js cap theirs at 4 MiB.</summary>
    public int MaxMessageSize { get; init; } = 4 * 1024 * 1024;

    /// <summary>Largest key accepted in a request (content keys are multihashes, peer ids at most 128 bytes).</summary>
    public int MaxKeySize { get; init; } = 1024;

    /// <summary>Addresses kept or sent per peer; the rest are ignored.</summary>
    public int MaxAddressesPerPeer { get; init; } = 16;

    /// <summary>Requests served on one inbound stream before it is closed.</summary>
    public int MaxRequestsPerStream { get; init; } = 1024;

    /// <summary>Checks a PUT_VALUE or GET_VALUE record (key, value); the default accepts any.</summary>
    public Func<byte[], byte[], bool> RecordValidator { get; init; } = static (_, _) => true;

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Seed for refresh targets and tie-breaks, so a simulation replays; null picks one from the host's identity.</summary>
    public int? RandomSeed { get; init; }

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(ProtocolId);
        ArgumentOutOfRangeException.ThrowIfLessThan(K, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(Alpha, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ProviderRecordTtl, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(EffectiveReannounceInterval, TimeSpan.Zero);
        if (EffectiveReannounceInterval >= ProviderRecordTtl)
            throw new ArgumentException("the re-announce interval must be shorter than the provider record TTL, or records lapse between announcements");
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RefreshInterval, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(SweepInterval, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(QueryTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(LookupTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(InboundIdleTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ReplyWriteTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxProvidersPerKey, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxProviderKeys, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxKeysPerProvider, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRecords, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRecordsPerPeer, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxProviderStoreBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRecordStoreBytes, 1);
        if (!(MaxStoreSharePerOrigin > 0 && MaxStoreSharePerOrigin <= 1))
            throw new ArgumentOutOfRangeException(nameof(MaxStoreSharePerOrigin), MaxStoreSharePerOrigin, "a share of a store is more than 0 and at most 1");
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMessageSize, 1024);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxFailuresBeforeEviction, 1);
        foreach (var peer in BootstrapPeers)
        {
            if (peer.PeerId is null) throw new ArgumentException($"bootstrap address {peer} lacks /p2p/<PeerId>");
        }
    }
}
