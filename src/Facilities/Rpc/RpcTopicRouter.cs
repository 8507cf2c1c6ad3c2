using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// Topic calls: providers from discovery, cached for <see cref="RpcOptions.TopicCacheTtl"/>; a
/// provider chosen by the power of two choices (two at random, the one with the lower cost
/// (in-flight + 1) × (latency EWMA + 1 ms) wins); fail-over on <see cref="RpcStatusCode.Unavailable"/>
/// of idempotent calls, and of any call that provably never arrived (<see cref="RpcException.NotDelivered"/>),
/// evicting the failed provider from the cache.
/// Shared by <see cref="RpcNode"/> and the TestKit twin.
/// </summary>
internal sealed class RpcTopicRouter
{
    private readonly PeerId _self;
    private readonly IDiscovery? _discovery;
    private readonly RpcOptions _options;
    private readonly ILogger _logger;
    private readonly Action<DiscoveredPeer>? _onDiscovered;
    private readonly ConcurrentDictionary<string, CachedTopic> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<PeerId, PeerLoad> _load = new();

    public RpcTopicRouter(PeerId self, IDiscovery? discovery, RpcOptions options, ILogger logger, Action<DiscoveredPeer>? onDiscovered)
    {
        _self = self;
        _discovery = discovery;
        _options = options;
        _logger = logger;
        _onDiscovered = onDiscovered;
    }

    public delegate Task<byte[]> PeerCall(PeerId peer, RpcCallOptions options, CancellationToken cancellationToken);

    /// <summary>In-flight calls and latency average of <paramref name="peer"/> as the balancer sees them.</summary>
    public (int InFlight, double LatencyMs) LoadOf(PeerId peer) =>
        _load.TryGetValue(peer, out var load) ? (Volatile.Read(ref load.InFlight), load.LatencyMs) : (0, 0);

    public async Task<byte[]> RequestAsync(string topic, PeerCall call, RpcCallOptions? options, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        options ??= RpcCallOptions.Default;
        // One deadline for all attempts: fail-over spends what is left of the caller's budget.
        var attemptOptions = options with { Deadline = options.ResolveDeadline(_options.TimeProvider, _options.DefaultTimeout), Timeout = null };
        var tried = new HashSet<PeerId>();
        RpcException? last = null;
        RpcException? skipped = null;
        for (var attempt = 0; attempt < _options.MaxTopicAttempts;)
        {
            var providers = await GetProvidersAsync(topic, cancellationToken);
            var candidates = providers.Where(p => !tried.Contains(p)).ToArray();
            if (candidates.Length == 0) break;
            var peer = Choose(candidates);
            tried.Add(peer);
            if (options.CalleeCheck is { } check && await check(peer, cancellationToken) is { } refused)
            {
                // Not an attempt: nothing was sent. Each provider is skipped at most once per call (tried), so this ends.
                // The reason quoted is a provider's own answer when there is one: that a provider was unreachable says less than that one answered with no right to serve.
                if (skipped is null || refused.InnerException is null || skipped.InnerException is not null) skipped = refused;
                _logger.LogDebug("topic {Topic}: provider {Peer} skipped: {Message}", topic, peer, refused.Message);
                continue;
            }
            attempt++;
            try
            {
                return await MeasuredAsync(peer, call, attemptOptions, cancellationToken);
            }
            catch (RpcException e) when (e.Code == RpcStatusCode.Unavailable)
            {
                Evict(peer);
                last = e;
                // A call that provably never arrived cannot run twice: any call may go on to the next provider.
                if (!options.Idempotent && !e.NotDelivered) throw;
                _logger.LogDebug("topic {Topic}: provider {Peer} unavailable ({Message}); trying another", topic, peer, e.Message);
            }
        }
        if (last is null && skipped is not null)
        {
            // Every provider failed the callee check: the cache holds nobody worth calling, so the next call looks again
            // (as when nobody provides the topic) instead of waiting out the TTL while a valid provider may have come.
            _cache.TryRemove(topic, out _);
            throw new RpcException(RpcStatusCode.Unavailable, $"no provider of topic '{topic}' may be called: {skipped.Message}", innerException: skipped);
        }
        throw last is null
            ? new RpcException(RpcStatusCode.Unavailable, $"no provider of topic '{topic}'")
            : new RpcException(RpcStatusCode.Unavailable, $"no provider of topic '{topic}' answered; last error: {last.Message}", innerException: last);
    }

    public async Task<IReadOnlyList<RpcPeerResult>> RequestAllAsync(string topic, PeerCall call, RpcCallOptions? options, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        options ??= RpcCallOptions.Default;
        var attemptOptions = options with { Deadline = options.ResolveDeadline(_options.TimeProvider, _options.DefaultTimeout), Timeout = null };
        var providers = await GetProvidersAsync(topic, cancellationToken);
        var calls = providers.Select(async peer =>
        {
            if (options.CalleeCheck is { } check && await check(peer, cancellationToken) is { } refused)
            {
                _logger.LogDebug("topic {Topic}: provider {Peer} skipped: {Message}", topic, peer, refused.Message);
                return null;
            }
            try
            {
                return new RpcPeerResult(peer, await MeasuredAsync(peer, call, attemptOptions, cancellationToken), null);
            }
            catch (RpcException e)
            {
                if (e.Code == RpcStatusCode.Unavailable) Evict(peer);
                return new RpcPeerResult(peer, null, e);
            }
        });
        var results = await Task.WhenAll(calls);
        // As in RequestAsync: when every provider failed the callee check, the next call looks the topic up again.
        if (providers.Length > 0 && options.CalleeCheck is not null && results.All(r => r is null)) _cache.TryRemove(topic, out _);
        return results.OfType<RpcPeerResult>().ToArray();
    }

    /// <summary>Drops <paramref name="peer"/> from every cached topic (it failed with a connection error).</summary>
    public void Evict(PeerId peer)
    {
        foreach (var (topic, cached) in _cache)
        {
            if (!cached.Peers.Contains(peer)) continue;
            _cache.TryUpdate(topic, cached with { Peers = cached.Peers.Where(p => p != peer).ToArray() }, cached);
        }
    }

    private async Task<byte[]> MeasuredAsync(PeerId peer, PeerCall call, RpcCallOptions options, CancellationToken cancellationToken)
    {
        var load = _load.GetOrAdd(peer, static _ => new PeerLoad());
        Interlocked.Increment(ref load.InFlight);
        var started = _options.TimeProvider.GetTimestamp();
        try
        {
            var response = await call(peer, options, cancellationToken);
            load.Record(_options.TimeProvider.GetElapsedTime(started).TotalMilliseconds, _options.LatencyEwmaAlpha);
            return response;
        }
        catch (RpcException e) when (e.Code is not (RpcStatusCode.Unavailable or RpcStatusCode.DeadlineExceeded or RpcStatusCode.Cancelled))
        {
            // The provider answered, if with an error: that round trip is a fair latency sample.
            load.Record(_options.TimeProvider.GetElapsedTime(started).TotalMilliseconds, _options.LatencyEwmaAlpha);
            throw;
        }
        finally
        {
            Interlocked.Decrement(ref load.InFlight);
        }
    }

    private PeerId Choose(PeerId[] candidates)
    {
        if (candidates.Length == 1) return candidates[0];
        int first, second;
        lock (_options.Random)
        {
            first = _options.Random.Next(candidates.Length);
            second = _options.Random.Next(candidates.Length - 1);
        }
        if (second >= first) second++;
        return Cost(candidates[second]) < Cost(candidates[first]) ? candidates[second] : candidates[first];
    }

    private double Cost(PeerId peer)
    {
        var (inFlight, latency) = LoadOf(peer);
        return (inFlight + 1) * (latency + 1);
    }

    private async Task<PeerId[]> GetProvidersAsync(string topic, CancellationToken cancellationToken)
    {
        var time = _options.TimeProvider;
        if (_cache.TryGetValue(topic, out var cached) && cached.Peers.Length > 0 && time.GetElapsedTime(cached.FetchedAt) < _options.TopicCacheTtl)
            return cached.Peers;
        if (_discovery is null) throw new InvalidOperationException("topic calls need an IDiscovery; none was given to this RPC node");
        IReadOnlyList<DiscoveredPeer> found;
        try
        {
            found = await _discovery.LookupAsync(topic, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw new RpcException(RpcStatusCode.Unavailable, $"looking up topic '{topic}' failed: {e.Message}", innerException: e);
        }
        foreach (var peer in found)
            if (peer.PeerId != _self) _onDiscovered?.Invoke(peer);
        // We may provide the topic ourselves; a node does not call itself over the network.
        var peers = found.Select(p => p.PeerId).Where(p => p != _self).Distinct().ToArray();
        _cache[topic] = new CachedTopic(peers, time.GetTimestamp());
        return peers;
    }

    private sealed record CachedTopic(PeerId[] Peers, long FetchedAt);

    private sealed class PeerLoad
    {
        private readonly object _gate = new();
        public int InFlight;
        private double _latencyMs;
        private bool _sampled;

        public double LatencyMs
        {
            get
            {
                lock (_gate) return _latencyMs;
            }
        }

        public void Record(double ms, double alpha)
        {
            lock (_gate)
            {
                _latencyMs = _sampled ? alpha * ms + (1 - alpha) * _latencyMs : ms;
                _sampled = true;
            }
        }
    }
}
