using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Workers.Contracts;

namespace P2PInference.Workers.Client;

/// <summary>
/// The gateways a client streams through, looked up by the <see cref="WorkerTopics.Gateway"/> topic
/// and kept for <see cref="ClientOptions.GatewayCacheTtl"/>, as topic calls keep their providers: a
/// DHT lookup per stream would cost more than the stream. A gateway that could not be called is
/// forgotten at once, so the next stream picks among the others or looks again. Shared by the
/// clients <see cref="P2PInferenceClient.WithApiKey"/> makes, which use the same connection.
/// </summary>
internal sealed class GatewayDirectory
{
    private readonly IDiscovery _discovery;
    private readonly TimeProvider _time;
    private readonly TimeSpan _ttl;
    private readonly Action<DiscoveredPeer>? _onDiscovered;
    private Known? _known;

    public GatewayDirectory(IDiscovery discovery, TimeProvider time, TimeSpan ttl, Action<DiscoveredPeer>? onDiscovered)
    {
        _discovery = discovery;
        _time = time;
        _ttl = ttl;
        _onDiscovered = onDiscovered;
    }

    /// <summary>The gateways known now, looked up when the cache is empty or stale; empty when the network has none.</summary>
    public async ValueTask<DiscoveredPeer[]> GetAsync(CancellationToken cancellationToken)
    {
        var known = Volatile.Read(ref _known);
        if (known is not null && _time.GetElapsedTime(known.FetchedAt) < _ttl) return known.Gateways;
        var found = await _discovery.LookupAsync(WorkerTopics.Gateway, cancellationToken);
        var gateways = new DiscoveredPeer[found.Count];
        for (var i = 0; i < gateways.Length; i++)
        {
            gateways[i] = found[i];
            _onDiscovered?.Invoke(found[i]);
        }
        // Nobody found is not remembered: the next stream looks again, as before a gateway announced itself.
        Volatile.Write(ref _known, gateways.Length > 0 ? new Known(gateways, _time.GetTimestamp()) : null);
        return gateways;
    }

    /// <summary>Stops offering <paramref name="gateway"/> until the gateways are looked up again.</summary>
    public void Forget(PeerId gateway)
    {
        while (Volatile.Read(ref _known) is { } known)
        {
            var index = Array.FindIndex(known.Gateways, g => g.PeerId == gateway);
            if (index < 0) return;
            Known? rest = known.Gateways.Length == 1 ? null : new Known([.. known.Gateways[..index], .. known.Gateways[(index + 1)..]], known.FetchedAt);
            if (ReferenceEquals(Interlocked.CompareExchange(ref _known, rest, known), known)) return;
        }
    }

    private sealed record Known(DiscoveredPeer[] Gateways, long FetchedAt);
}
