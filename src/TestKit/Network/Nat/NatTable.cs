namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// The state of one <see cref="NatRouter"/> or <see cref="Firewall"/>: its inside nodes and its
/// mappings, found by key (outbound) or by public endpoint (inbound). A firewall translates nothing:
/// a node's public endpoint is its own address, and it keeps one mapping per node for its filter.
/// Expired mappings are dropped when looked at, so no timer runs for them. Callers hold the network's lock.
/// </summary>
internal sealed class NatTable
{
    private const int FirstPort = 1024;
    private const int PortCount = 65536 - FirstPort;

    private readonly Dictionary<NatMappingKey, NatMapping> _byKey = [];
    private readonly Dictionary<NatEndpoint, NatMapping> _byPublic = [];
    private readonly Dictionary<NatMappingKey, int> _generations = [];
    private readonly Dictionary<int, NatMapping> _forwards = [];
    private readonly int _seed;

    public NatTable(string name, NatBehavior behavior, string? publicHost, int seed)
    {
        Name = name;
        Behavior = behavior;
        PublicHost = publicHost;
        _seed = seed;
    }

    public string Name { get; }

    public NatBehavior Behavior { get; }

    /// <summary>The router's public IPv4 address as text; null for a firewall.</summary>
    public string? PublicHost { get; }

    public bool Translates => PublicHost is not null;

    public TimeSpan MappingTimeout => Behavior.MappingTimeout;

    public HashSet<string> Members { get; } = new(StringComparer.Ordinal);

    /// <summary>The mapping an outbound dial of <paramref name="inside"/> to <paramref name="destination"/> leaves through, made if needed; the destination joins its filter.</summary>
    public NatMapping MapOutbound(string inside, NatEndpoint destination, DateTimeOffset now)
    {
        var key = KeyOf(inside, destination);
        if (_byKey.TryGetValue(key, out var mapping) && mapping.IsExpired(now))
        {
            Remove(mapping);
            mapping = null;
        }
        if (mapping is null)
        {
            mapping = new NatMapping(this, key, Allocate(key), now);
            _byKey.Add(key, mapping);
            _byPublic.Add(mapping.Public, mapping);
        }
        mapping.Contacted.Add(destination);
        mapping.Touch(now);
        return mapping;
    }

    /// <summary>
    /// A port forward the operator set up: <paramref name="port"/> on the public address leads to <paramref name="inside"/>,
    /// for anyone, for good (a reboot keeps it). Outbound dials of the node still leave through mappings of their own.
    /// </summary>
    public void Forward(int port, string inside, DateTimeOffset now)
    {
        if (PublicHost is null) throw new InvalidOperationException($"'{Name}' is a firewall: it has no public address to forward from");
        if (port is < 1 or > 65535) throw new ArgumentOutOfRangeException(nameof(port), port, "a TCP port is 1 to 65535");
        if (!Members.Contains(inside)) throw new ArgumentException($"node '{inside}' is not behind '{Name}'", nameof(inside));
        var endpoint = new NatEndpoint(PublicHost, port);
        if (_forwards.ContainsKey(port) || _byPublic.ContainsKey(endpoint)) throw new InvalidOperationException($"port {port} of '{Name}' is already in use");
        var forward = new NatMapping(this, new NatMappingKey(inside, null, port), endpoint, now);
        // Held once here and never let go: a forward does not expire.
        forward.Acquire(now);
        _forwards.Add(port, forward);
    }

    /// <summary>Whether <paramref name="mapping"/> is a port forward, which lets everyone in.</summary>
    public bool IsForward(NatMapping mapping) => _forwards.TryGetValue(mapping.Public.Port, out var forward) && ReferenceEquals(forward, mapping);

    /// <summary>The live mapping at <paramref name="publicEndpoint"/>, if any.</summary>
    public NatMapping? Find(NatEndpoint publicEndpoint, DateTimeOffset now)
    {
        if (publicEndpoint.Host == PublicHost && _forwards.TryGetValue(publicEndpoint.Port, out var forward)) return forward;
        if (!_byPublic.TryGetValue(publicEndpoint, out var mapping)) return null;
        if (!mapping.IsExpired(now)) return mapping;
        Remove(mapping);
        return null;
    }

    /// <summary>Whether the filter of <paramref name="mapping"/> lets a connection attempt from <paramref name="source"/> in.</summary>
    public bool Admits(NatMapping mapping, NatEndpoint source) => IsForward(mapping) || Behavior.Filtering switch
    {
        NatFilteringBehavior.EndpointIndependent => true,
        NatFilteringBehavior.AddressDependent => mapping.Contacted.Any(c => c.Host == source.Host),
        _ => mapping.Contacted.Contains(source),
    };

    public int CountLive(DateTimeOffset now)
    {
        foreach (var expired in _byKey.Values.Where(m => m.IsExpired(now)).ToArray()) Remove(expired);
        return _byKey.Count;
    }

    /// <summary>Forgets every mapping, as a router that reboots does; its port forwards are configuration, and stay.</summary>
    public void Clear()
    {
        _byKey.Clear();
        _byPublic.Clear();
    }

    private void Remove(NatMapping mapping)
    {
        _byKey.Remove(mapping.Key);
        _byPublic.Remove(mapping.Public);
    }

    private NatMappingKey KeyOf(string inside, NatEndpoint destination) =>
        (Translates ? Behavior.Mapping : NatMappingBehavior.EndpointIndependent) switch
        {
            NatMappingBehavior.EndpointIndependent => new(inside, null, -1),
            NatMappingBehavior.AddressDependent => new(inside, destination.Host, -1),
            _ => new(inside, destination.Host, destination.Port),
        };

    /// <summary>
    /// A port drawn from the network's seed, the router and the mapping's key (and how many mappings
    /// that key had before), so a mapping's port does not depend on what else was dialed first;
    /// only a collision, probed onward, does.
    /// </summary>
    private NatEndpoint Allocate(NatMappingKey key)
    {
        if (PublicHost is null) return NatEndpoint.Node(key.Inside);
        _generations.TryGetValue(key, out var generation);
        _generations[key] = generation + 1;
        for (var probe = 0; ; probe++)
        {
            var port = FirstPort + (int)(Hash(key, generation, probe) % PortCount);
            var candidate = new NatEndpoint(PublicHost, port);
            if (!_byPublic.ContainsKey(candidate) && !_forwards.ContainsKey(port)) return candidate;
        }
    }

    /// <summary>FNV-1a over the parts: string hashing in .NET is randomized per process.</summary>
    private ulong Hash(NatMappingKey key, int generation, int probe)
    {
        var h = 14695981039346656037UL;
        void Add(ulong value) => h = (h ^ value) * 1099511628211UL;
        void AddText(string? text)
        {
            foreach (var ch in text ?? "") Add(ch);
            Add(0xFFFF);
        }
        Add((uint)_seed);
        AddText(Name);
        AddText(key.Inside);
        AddText(key.Host);
        Add((ulong)(uint)key.Port);
        Add((uint)generation);
        Add((uint)probe);
        return h ^ (h >> 29);
    }
}
