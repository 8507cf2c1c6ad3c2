using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network.Nat;

namespace P2PInference.TestKit.Network;

/// <summary>
/// A shared in-memory network of named nodes. Each node gets an <see cref="ITransport"/> from
/// <see cref="CreateTransport"/> and is reachable at <c>/memory/&lt;name&gt;</c>. Faults are set per
/// directed link through <see cref="Link"/> (latency, jitter, bandwidth, hold, slicing, corruption,
/// data limit), between nodes or groups through <see cref="Partition(string, string, PartitionMode)"/>,
/// and per node through <see cref="Crash"/> and <see cref="Stop"/>. Nodes can sit behind NAT routers
/// (<see cref="AddNatRouter"/>) and firewalls (<see cref="AddFirewall"/>). Timing uses the given
/// <see cref="System.TimeProvider"/> only (a fake one makes deliveries happen when it is advanced) and
/// every random choice derives from <see cref="Seed"/>.
/// </summary>
/// <remarks>
/// Without faults a write is one copy into the receiver's bounded buffer: cheap enough for a whole
/// stack's tests and large simulations. Dials cost one round trip of the two links' latencies.
/// A dial between two nodes fails while any partition cuts either direction between them, as a TCP
/// handshake would; a one-way partition otherwise affects only its own direction.
/// </remarks>
public sealed class InMemoryNetwork
{
    /// <summary>Default bound of buffered bytes per connection and direction; writers wait beyond it.</summary>
    public const int DefaultBufferSize = 1 << 20;

    private readonly object _gate = new();
    private readonly Dictionary<string, Node> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<(string From, string To), InMemoryLink> _links = [];
    private readonly List<NetworkPartition> _partitions = [];
    private readonly List<Action<InMemoryLink>> _linkDefaults = [];
    private long _connectionsOpened;
    private int _openConnections;
    private NatFabric? _nat;

    public InMemoryNetwork(TimeProvider? timeProvider = null, int seed = 0)
    {
        TimeProvider = timeProvider ?? TimeProvider.System;
        Seed = seed;
    }

    public TimeProvider TimeProvider { get; }

    public int Seed { get; }

    /// <summary>Bytes buffered per connection and direction (in flight plus unread) before writers wait.</summary>
    public int BufferSize
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(value));
    } = DefaultBufferSize;

    /// <summary>
    /// How long a dial whose SYN a NAT or firewall drops keeps retransmitting before it fails: Linux's
    /// connect() gives up after its 6 SYN retries, 127 s. A dial's cancellation token ends it sooner.
    /// </summary>
    public TimeSpan UnansweredDialTimeout
    {
        get;
        init => field = value > TimeSpan.Zero ? value : throw new ArgumentOutOfRangeException(nameof(value));
    } = TimeSpan.FromSeconds(127);

    /// <summary>Connections currently open (not yet closed by both ends nor reset).</summary>
    public int ConnectionCount => Volatile.Read(ref _openConnections);

    /// <summary>Connections ever established on this network.</summary>
    public long ConnectionsOpened => Interlocked.Read(ref _connectionsOpened);

    /// <summary><c>/memory/&lt;name&gt;</c>.</summary>
    public static Multiaddress AddressOf(string nodeName) => Multiaddress.Memory(nodeName);

    /// <summary>
    /// A transport for <paramref name="nodeName"/>. Calling it again for the same name (e.g. after a
    /// crash) gives another transport for the same node: still one listener per node.
    /// </summary>
    public InMemoryTransport CreateTransport(string nodeName)
    {
        ValidateName(nodeName);
        lock (_gate) GetNode(nodeName);
        return new InMemoryTransport(this, nodeName);
    }

    /// <summary>The directed link <paramref name="from"/> → <paramref name="to"/>, created on first use.</summary>
    public InMemoryLink Link(string from, string to)
    {
        ValidateName(from);
        ValidateName(to);
        lock (_gate) return GetLink(from, to);
    }

    /// <summary>Applies <paramref name="configure"/> to every link, existing and future (e.g. a base latency for a simulation).</summary>
    public void ConfigureLinks(Action<InMemoryLink> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        InMemoryLink[] links;
        lock (_gate)
        {
            _linkDefaults.Add(configure);
            links = [.. _links.Values];
        }
        foreach (var link in links) configure(link);
    }

    /// <summary>
    /// A NAT router named <paramref name="name"/> with the given behaviour; nodes go behind it with
    /// <see cref="NatRouter.Add"/>. Its public address defaults to the next of 203.0.113.1, .2, … (RFC 5737).
    /// Mapped ports derive from <see cref="Seed"/>, the router's name and the mapping's key.
    /// </summary>
    public NatRouter AddNatRouter(string name, NatBehavior behavior, System.Net.IPAddress? publicAddress = null) =>
        Nat.AddRouter(name, behavior, publicAddress);

    /// <summary>
    /// A stateful firewall named <paramref name="name"/>: nodes behind it (<see cref="Firewall.Add"/>) keep
    /// their addresses and dial out freely; inbound dials get through only per <paramref name="filtering"/>.
    /// </summary>
    public Firewall AddFirewall(string name, NatFilteringBehavior filtering = NatFilteringBehavior.AddressAndPortDependent, TimeSpan? stateTimeout = null) =>
        Nat.AddFirewall(name, filtering, stateTimeout ?? NatBehavior.DefaultMappingTimeout);

    /// <summary>A two-way partition between <paramref name="a"/> and <paramref name="b"/>.</summary>
    public NetworkPartition Partition(string a, string b, PartitionMode mode = PartitionMode.Stall) =>
        AddPartition(new NetworkPartition(this, [a], [b], mode, twoWay: true));

    /// <summary>A two-way partition between every node of <paramref name="groupA"/> and every node of <paramref name="groupB"/>.</summary>
    public NetworkPartition Partition(IEnumerable<string> groupA, IEnumerable<string> groupB, PartitionMode mode = PartitionMode.Stall) =>
        AddPartition(new NetworkPartition(this, groupA, groupB, mode, twoWay: true));

    /// <summary>Cuts only traffic from <paramref name="from"/> to <paramref name="to"/>; the other direction still flows.</summary>
    public NetworkPartition PartitionOneWay(string from, string to, PartitionMode mode = PartitionMode.Stall) =>
        AddPartition(new NetworkPartition(this, [from], [to], mode, twoWay: false));

    /// <summary>Cuts only traffic from the nodes of <paramref name="from"/> to the nodes of <paramref name="to"/>.</summary>
    public NetworkPartition PartitionOneWay(IEnumerable<string> from, IEnumerable<string> to, PartitionMode mode = PartitionMode.Stall) =>
        AddPartition(new NetworkPartition(this, from, to, mode, twoWay: false));

    /// <summary>Heals every partition.</summary>
    public void Heal()
    {
        NetworkPartition[] all;
        lock (_gate) all = [.. _partitions];
        foreach (var partition in all) Heal(partition);
    }

    /// <summary>Resets every open connection between <paramref name="a"/> and <paramref name="b"/>: both ends' reads and writes throw.</summary>
    /// <returns>How many were reset.</returns>
    public int ResetConnections(string a, string b)
    {
        var victims = ConnectionsOf(a, c => c.Between(a, b));
        foreach (var c in victims) c.Abort("connection reset", drain: false);
        return victims.Length;
    }

    /// <summary>
    /// The node dies without a goodbye: its listener disappears (dials to it are refused) and all its
    /// connections are reset — reads and writes on both ends throw <see cref="IOException"/>. The node
    /// may listen again later (same or new transport), as a restarted process would.
    /// </summary>
    public void Crash(string nodeName)
    {
        CloseListener(nodeName);
        Volatile.Read(ref _nat)?.AbandonDialsOf(nodeName, $"node '{nodeName}' crashed");
        foreach (var c in ConnectionsOf(nodeName, static _ => true))
            c.Abort($"connection reset by peer: node '{nodeName}' crashed", drain: false);
    }

    /// <summary>
    /// The node shuts down cleanly: its listener closes and each of its connections is closed from its
    /// side — the remote reads what was sent, then end of stream. The node may listen again later.
    /// </summary>
    public void Stop(string nodeName)
    {
        CloseListener(nodeName);
        Volatile.Read(ref _nat)?.AbandonDialsOf(nodeName, $"node '{nodeName}' stopped");
        foreach (var c in ConnectionsOf(nodeName, static _ => true))
        {
            if (c.Dialer == nodeName) c.CloseEnd(dialerSide: true);
            if (c.Listener == nodeName) c.CloseEnd(dialerSide: false);
        }
    }

    private void CloseListener(string nodeName)
    {
        InMemoryListener? listener;
        lock (_gate)
        {
            var node = GetNode(nodeName);
            listener = node.Listener;
            node.Listener = null;
        }
        listener?.Close();
    }

    public bool IsListening(string nodeName)
    {
        lock (_gate) return _nodes.TryGetValue(nodeName, out var node) && node.Listener is not null;
    }

    /// <summary>Open connections with <paramref name="nodeName"/> at either end.</summary>
    public int ConnectionCountOf(string nodeName)
    {
        lock (_gate) return _nodes.TryGetValue(nodeName, out var node) ? node.Connections.Count : 0;
    }

    internal object Gate => _gate;

    private NatFabric Nat
    {
        get
        {
            lock (_gate) return _nat ??= new NatFabric(this);
        }
    }

    /// <summary>Whether a dial to <paramref name="address"/> can be attempted: a node's <c>/memory</c> address or a NAT router's public endpoint.</summary>
    internal bool CanDial(Multiaddress address)
    {
        var target = NatEndpoint.FromAddress(address);
        if (target is not { } endpoint) return false;
        return endpoint.IsNode || (Volatile.Read(ref _nat) is { } nat && nat.Owns(endpoint));
    }

    internal ValueTask<RawConnection> DialAsync(string from, Multiaddress address, CancellationToken cancellationToken)
    {
        if (!CanDial(address)) throw new TransportException($"the in-memory transport cannot dial {address}");
        var target = NatEndpoint.FromAddress(address)!.Value;
        // Without routers or firewalls every dial goes the plain way, exactly as before they existed.
        return Volatile.Read(ref _nat) is { } nat
            ? nat.DialAsync(from, target, cancellationToken)
            : DialDirectAsync(from, target.Host, cancellationToken);
    }

    /// <summary>A dial that crosses no NAT or firewall.</summary>
    internal async ValueTask<RawConnection> DialDirectAsync(string from, string to, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        TimeSpan roundTrip;
        lock (_gate) roundTrip = RoundTripLocked(from, to);
        if (roundTrip > TimeSpan.Zero)
            await Task.Delay(roundTrip, TimeProvider, cancellationToken);

        MemoryConnection connection;
        bool offered;
        Multiaddress local, remote;
        lock (_gate)
        {
            if (IsPartitionedLocked(from, to))
                throw new TransportException($"dial {from} -> {to} failed: the network is partitioned");
            if (!IsListeningLocked(to))
                throw new TransportException($"dial {from} -> {to} failed: connection refused (nothing listens on {AddressOf(to)})");
            connection = OpenLocked(from, to);
            (local, remote) = (GetNode(from).Address, GetNode(to).Address);
            offered = OfferLocked(to, new RawConnection(connection.ListenerStream, remote, local), connection);
        }
        if (!offered)
        {
            connection.Abort("connection refused: listener closed", drain: false);
            throw new TransportException($"dial {from} -> {to} failed: connection refused (listener closed)");
        }
        return new RawConnection(connection.DialerStream, local, remote);
    }

    /// <summary>A new connection between two nodes, registered before anyone sees it so a reset, hold or heal never misses it. Caller holds the lock.</summary>
    internal MemoryConnection OpenLocked(string from, string to)
    {
        var toListener = GetLink(from, to);
        var toDialer = GetLink(to, from);
        var index = toListener.NextConnectionIndex();
        if (!ReferenceEquals(toListener, toDialer)) toDialer.NextConnectionIndex();
        var connection = new MemoryConnection(this, from, to, toListener, toDialer, BufferSize, StableSeed(Seed, from, to, index));
        connection.Attach();
        GetNode(from).Connections.Add(connection);
        GetNode(to).Connections.Add(connection);
        _openConnections++;
        _connectionsOpened++;
        return connection;
    }

    /// <summary>Queues <paramref name="raw"/> on <paramref name="to"/>'s listener; false when it has none or it closed. Caller holds the lock.</summary>
    internal bool OfferLocked(string to, RawConnection raw, MemoryConnection connection) =>
        _nodes.TryGetValue(to, out var node) && node.Listener is { } listener && listener.Offer(raw, connection);

    internal bool IsListeningLocked(string nodeName) => _nodes.TryGetValue(nodeName, out var node) && node.Listener is not null;

    /// <summary>
    /// Whether an open connection between the two nodes runs through <paramref name="mapping"/> (and through
    /// <paramref name="other"/>, <paramref name="a"/>'s own mapping when it is behind a NAT too): its four-tuple is taken. Caller holds the lock.
    /// </summary>
    internal bool IsConnectedThroughLocked(string a, string b, Nat.NatMapping mapping, Nat.NatMapping? other = null)
    {
        if (!_nodes.TryGetValue(a, out var node)) return false;
        foreach (var c in node.Connections)
            if (!c.IsFinished && (c.Dialer == b || c.Listener == b) && c.NatMappings?.Contains(mapping) == true
                && (other is null || c.NatMappings.Contains(other)))
                return true;
        return false;
    }

    /// <summary>Whether a partition cuts either direction between the two nodes, which fails a dial. Caller holds the lock.</summary>
    internal bool IsPartitionedLocked(string a, string b)
    {
        foreach (var partition in _partitions)
            if (partition.Cuts(a, b) || partition.Cuts(b, a))
                return true;
        return false;
    }

    internal TimeSpan RoundTripLocked(string a, string b) => GetLink(a, b).Latency + GetLink(b, a).Latency;

    /// <summary>Resets every open connection matching <paramref name="predicate"/>.</summary>
    internal void ResetConnectionsWhere(Func<MemoryConnection, bool> predicate, string reason)
    {
        foreach (var c in Connections(predicate)) c.Abort(reason, drain: false);
    }

    internal InMemoryListener Listen(string nodeName)
    {
        lock (_gate)
        {
            var node = GetNode(nodeName);
            if (node.Listener is not null)
                throw new TransportException($"{AddressOf(nodeName)} is already being listened on");
            node.Listener = new InMemoryListener(this, nodeName);
            return node.Listener;
        }
    }

    internal void RemoveListener(InMemoryListener listener)
    {
        lock (_gate)
        {
            if (_nodes.TryGetValue(listener.NodeName, out var node) && ReferenceEquals(node.Listener, listener))
                node.Listener = null;
        }
        listener.Close();
    }

    internal void Unregister(MemoryConnection connection)
    {
        lock (_gate)
        {
            var removed = _nodes.TryGetValue(connection.Dialer, out var dialer) && dialer.Connections.Remove(connection);
            if (_nodes.TryGetValue(connection.Listener, out var listener)) removed |= listener.Connections.Remove(connection);
            if (removed) _openConnections--;
            if (connection.NatMappings is { } mappings)
            {
                // Once no connection holds a mapping its timeout starts.
                connection.NatMappings = null;
                var now = TimeProvider.GetUtcNow();
                foreach (var mapping in mappings) mapping.Release(now);
            }
        }
    }

    internal void Heal(NetworkPartition partition)
    {
        lock (_gate)
        {
            if (!_partitions.Remove(partition)) return;
            partition.IsHealed = true;
        }
        RecomputeLinks();
    }

    private NetworkPartition AddPartition(NetworkPartition partition)
    {
        lock (_gate) _partitions.Add(partition);
        RecomputeLinks();
        if (partition.Mode == PartitionMode.Reset)
        {
            foreach (var c in Connections(c => partition.Cuts(c.Dialer, c.Listener) || partition.Cuts(c.Listener, c.Dialer)))
                c.Abort("connection reset: network partition", drain: false);
        }
        return partition;
    }

    private void RecomputeLinks()
    {
        List<(InMemoryLink Link, PartitionMode? Mode)> changes = [];
        lock (_gate)
        {
            foreach (var link in _links.Values)
            {
                var mode = PartitionModeOf(link.From, link.To);
                if (mode != link.Partition) changes.Add((link, mode));
            }
        }
        // Outside the lock: a heal wakes stalled flows, which must not run under the network's lock.
        foreach (var (link, mode) in changes) link.SetPartition(mode);
    }

    private PartitionMode? PartitionModeOf(string from, string to)
    {
        PartitionMode? worst = null;
        foreach (var partition in _partitions)
            if (partition.Cuts(from, to) && (worst is null || partition.Mode > worst))
                worst = partition.Mode;
        return worst;
    }

    private MemoryConnection[] Connections(Func<MemoryConnection, bool> predicate)
    {
        lock (_gate)
        {
            var result = new HashSet<MemoryConnection>();
            foreach (var node in _nodes.Values)
                foreach (var c in node.Connections)
                    if (predicate(c)) result.Add(c);
            return [.. result];
        }
    }

    /// <summary>
    /// The open connections with <paramref name="nodeName"/> at one end that match: from the node's
    /// own set, since a scan of every node's made a crash cost all the network's connections.
    /// </summary>
    private MemoryConnection[] ConnectionsOf(string nodeName, Func<MemoryConnection, bool> predicate)
    {
        lock (_gate)
        {
            if (!_nodes.TryGetValue(nodeName, out var node)) return [];
            var result = new List<MemoryConnection>(node.Connections.Count);
            foreach (var c in node.Connections)
                if (predicate(c)) result.Add(c);
            return [.. result];
        }
    }

    private Node GetNode(string name)
    {
        if (!_nodes.TryGetValue(name, out var node))
        {
            node = new Node(name);
            _nodes.Add(name, node);
        }
        return node;
    }

    private InMemoryLink GetLink(string from, string to)
    {
        if (!_links.TryGetValue((from, to), out var link))
        {
            link = new InMemoryLink(this, from, to);
            _links.Add((from, to), link);
            var mode = PartitionModeOf(from, to);
            if (mode is not null) link.SetPartition(mode);
            foreach (var configure in _linkDefaults) configure(link);
        }
        return link;
    }

    private static void ValidateName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('/')) throw new ArgumentException($"node name '{name}' must not contain '/'", nameof(name));
    }

    /// <summary>A seed per connection that does not depend on string hashing, which .NET randomizes per process.</summary>
    private static int StableSeed(int seed, string from, string to, long index)
    {
        var h = 14695981039346656037UL ^ (ulong)(uint)seed;
        foreach (var ch in from) h = (h ^ ch) * 1099511628211UL;
        h = (h ^ '>') * 1099511628211UL;
        foreach (var ch in to) h = (h ^ ch) * 1099511628211UL;
        h = (h ^ (ulong)index) * 1099511628211UL;
        return unchecked((int)(h ^ (h >> 32)));
    }

    private sealed class Node(string name)
    {
        private Multiaddress? _address;

        public InMemoryListener? Listener { get; set; }
        public HashSet<MemoryConnection> Connections { get; } = [];

        /// <summary>
        /// The node's address, one instance for all its connections: each connection end keeps its
        /// local and remote address, and a large simulation has tens of thousands of connections.
        /// </summary>
        public Multiaddress Address => _address ??= AddressOf(name);
    }
}
