namespace P2PInference.TestKit.Network.Nat;

/// <summary>Which outbound dials share a mapping: <see cref="Host"/> and <see cref="Port"/> are null/-1 where the mapping behaviour ignores them.</summary>
internal readonly record struct NatMappingKey(string Inside, string? Host, int Port);

/// <summary>
/// One entry of a <see cref="NatTable"/>: an inside node's public endpoint and the remote endpoints it
/// has dialed through it (the filter). Connections and dials in progress hold it; once none does it
/// lives <see cref="NatBehavior.MappingTimeout"/> longer.
/// </summary>
internal sealed class NatMapping(NatTable table, NatMappingKey key, NatEndpoint publicEndpoint, DateTimeOffset now)
{
    public NatTable Table { get; } = table;
    public NatMappingKey Key { get; } = key;
    public string Inside => Key.Inside;
    public NatEndpoint Public { get; } = publicEndpoint;
    public HashSet<NatEndpoint> Contacted { get; } = [];
    public int Users { get; private set; }
    public DateTimeOffset LastUsed { get; private set; } = now;

    public bool IsExpired(DateTimeOffset now) => Users == 0 && now - LastUsed >= Table.MappingTimeout;

    public void Touch(DateTimeOffset now) => LastUsed = now;

    public void Acquire(DateTimeOffset now)
    {
        Users++;
        LastUsed = now;
    }

    public void Release(DateTimeOffset now)
    {
        Users--;
        LastUsed = now;
    }

    public override string ToString() => $"{Inside} -> {Public} ({Table.Name})";
}
