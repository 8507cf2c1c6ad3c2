using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// Topic calls: providers from discovery, cached for <see cref="RpcOptions.TopicCacheTtl"/>; a
/// provider chosen by the power of two choices (two at random, the one with the lower cost
/// (in-flight + 1) × (latency EWMA + 1 ms) wins; a provider with no latency sample yet counts the
/// median of the topic's measured ones, neither preferred nor starved); fail-over on <see cref="RpcStatusCode.Unavailable"/>
/// of idempotent calls, and of any call that provably never arrived (<see cref="RpcException.NotDelivered"/>),
/// evicting the failed provider from the cache; when no provider may have received the call, its final error is
/// marked <see cref="RpcException.NotDelivered"/>. The call's one deadline also bounds the provider lookup and
/// the callee checks (<see cref="TopicCallDeadline"/>): past it the call fails with <see cref="RpcStatusCode.DeadlineExceeded"/>.
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

    public delegate IAsyncEnumerable<byte[]> PeerStreamCall(PeerId peer, RpcCallOptions options, CancellationToken cancellationToken);

    public async Task<byte[]> RequestAsync(string topic, PeerCall call, RpcCallOptions? options, CancellationToken cancellationToken)
    {
        using var attempts = new TopicAttempts(this, topic, options, cancellationToken);
        while (await attempts.NextAsync() is { } peer)
        {
            try
            {
                return await MeasuredAsync(peer, call, attempts.Options, cancellationToken);
            }
            catch (RpcException e) when (e.Code == RpcStatusCode.Unavailable)
            {
                if (!attempts.MayGoOnAfter(peer, e)) throw;
            }
        }
        throw attempts.Exhausted();
    }

    /// <summary>
    /// A streaming call to one provider, chosen as <see cref="RequestAsync"/> chooses. Fail-over happens only
    /// before the first item: once an item has been handed out, a failure is the caller's to see.
    /// The provider counts as in flight for the whole stream; the time to its first item is its latency sample.
    /// </summary>
    public async IAsyncEnumerable<byte[]> RequestStreamAsync(string topic, PeerStreamCall call, RpcCallOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var attempts = new TopicAttempts(this, topic, options, cancellationToken);
        while (await attempts.NextAsync() is { } peer)
        {
            var load = _load.GetOrAdd(peer, static _ => new PeerLoad());
            Interlocked.Increment(ref load.InFlight);
            var started = _options.TimeProvider.GetTimestamp();
            var items = call(peer, attempts.Options, cancellationToken).GetAsyncEnumerator(cancellationToken);
            bool any;
            try
            {
                any = await items.MoveNextAsync();
                load.Record(_options.TimeProvider.GetElapsedTime(started).TotalMilliseconds, _options.LatencyEwmaAlpha);
            }
            catch (Exception e)
            {
                Interlocked.Decrement(ref load.InFlight);
                await items.DisposeAsync();
                if (e is RpcException failure) RecordFailure(load, started, failure);
                if (e is RpcException { Code: RpcStatusCode.Unavailable } unavailable && attempts.MayGoOnAfter(peer, unavailable)) continue;
                throw;
            }
            try
            {
                if (!any) yield break;
                yield return items.Current;
                while (await items.MoveNextAsync()) yield return items.Current;
            }
            finally
            {
                Interlocked.Decrement(ref load.InFlight);
                await items.DisposeAsync();
            }
            yield break;
        }
        throw attempts.Exhausted();
    }

    public async Task<IReadOnlyList<RpcPeerResult>> RequestAllAsync(string topic, PeerCall call, RpcCallOptions? options, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        options ??= RpcCallOptions.Default;
        var attemptOptions = WithOneDeadline(options);
        using var deadline = new TopicCallDeadline(attemptOptions.Deadline, _options.TimeProvider, cancellationToken);
        PeerId[] providers;
        try
        {
            providers = await GetProvidersAsync(topic, deadline);
        }
        catch (OperationCanceledException) when (deadline.HasPassed)
        {
            throw LookupPastDeadline(topic);
        }
        var checkToken = options.CalleeCheck is null ? cancellationToken : deadline.Token;
        var calls = providers.Select(async peer =>
        {
            if (options.CalleeCheck is { } check)
            {
                RpcException? refused;
                try
                {
                    refused = await check(peer, checkToken);
                }
                catch (OperationCanceledException) when (deadline.HasPassed)
                {
                    return new RpcPeerResult(peer, null, CheckPastDeadline(topic, peer));
                }
                if (refused is not null)
                {
                    _logger.LogDebug("topic {Topic}: provider {Peer} skipped: {Message}", topic, peer, refused.Message);
                    // Reported, not dropped: a caller that found no usable provider can tell "none could be called"
                    // from "there is none" (a gateway cut off from every processor from a model nobody serves).
                    return new RpcPeerResult(peer, null, refused) { Skipped = true };
                }
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
        if (providers.Length > 0 && options.CalleeCheck is not null && results.All(r => r.Skipped)) _cache.TryRemove(topic, out _);
        return results;
    }

    private static RpcException LookupPastDeadline(string topic) =>
        new(RpcStatusCode.DeadlineExceeded, $"the deadline passed while looking up the providers of topic '{topic}'");

    private static RpcException CheckPastDeadline(string topic, PeerId peer) =>
        new(RpcStatusCode.DeadlineExceeded, $"the deadline passed while provider {peer} of topic '{topic}' was being checked");

    /// <summary>The caller's options with its timeout turned into one deadline: every attempt of a topic call spends what is left of it.</summary>
    private RpcCallOptions WithOneDeadline(RpcCallOptions options) =>
        options with { Deadline = options.ResolveDeadline(_options.TimeProvider, _options.DefaultTimeout), Timeout = null };

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
        catch (RpcException e)
        {
            RecordFailure(load, started, e);
            throw;
        }
        finally
        {
            Interlocked.Decrement(ref load.InFlight);
        }
    }

    /// <summary>
    /// A call to a provider that failed: one that ended without serving it (unavailable, or silent past the deadline)
    /// marks the provider failed, so the next choices prefer others (a provider hanging on every call recorded
    /// nothing and was chosen as often as before); one it answered with another error is a fair latency sample.
    /// </summary>
    private void RecordFailure(PeerLoad load, long started, RpcException e)
    {
        switch (e.Code)
        {
            case RpcStatusCode.Cancelled:
                return;
            case RpcStatusCode.Unavailable or RpcStatusCode.DeadlineExceeded:
                load.RecordFailure(_options.TimeProvider.GetTimestamp());
                return;
            default:
                load.Record(_options.TimeProvider.GetElapsedTime(started).TotalMilliseconds, _options.LatencyEwmaAlpha);
                return;
        }
    }

    /// <summary>Two untried providers at random, the cheaper one wins; null when every provider was tried.</summary>
    private PeerId? Choose(PeerId[] providers, HashSet<PeerId> tried)
    {
        var left = providers.Length;
        foreach (var p in providers)
            if (tried.Contains(p)) left--;
        if (left == 0) return null;
        if (left == 1) return Untried(providers, tried, 0);
        int first, second;
        lock (_options.Random)
        {
            first = _options.Random.Next(left);
            second = _options.Random.Next(left - 1);
        }
        if (second >= first) second++;
        var a = Untried(providers, tried, first);
        var b = Untried(providers, tried, second);
        double? median = null;
        var now = _options.TimeProvider.GetTimestamp();
        return Cost(b, providers, now, ref median) < Cost(a, providers, now, ref median) ? b : a;
    }

    private static PeerId Untried(PeerId[] providers, HashSet<PeerId> tried, int index)
    {
        foreach (var p in providers)
        {
            if (tried.Contains(p)) continue;
            if (index-- == 0) return p;
        }
        throw new UnreachableException();
    }

    /// <summary>
    /// (in-flight + 1) × (latency + 1 ms) × 2^(failures in a row, while the last is recent). A provider never measured (new, or one whose calls all failed
    /// before an answer) counts the median latency of the measured <paramref name="providers"/>: counting
    /// it as 0 ms made it cheaper than every measured one, so the balancer chose it first every time.
    /// </summary>
    /// <param name="median">The median of <paramref name="providers"/>, computed here the first time a choice needs it.</param>
    private double Cost(PeerId peer, PeerId[] providers, long now, ref double? median)
    {
        if (!_load.TryGetValue(peer, out var load)) return (median ??= MedianLatency(providers)) + 1;
        var inFlight = Volatile.Read(ref load.InFlight);
        var latency = load.TryGetLatency(out var measured) ? measured : median ??= MedianLatency(providers);
        return (inFlight + 1) * (latency + 1) * load.FailurePenalty(now, _options.TimeProvider);
    }

    /// <summary>The median latency EWMA of the measured <paramref name="providers"/>; 0 when none is measured.</summary>
    private double MedianLatency(PeerId[] providers)
    {
        Span<double> samples = providers.Length <= 64 ? stackalloc double[providers.Length] : new double[providers.Length];
        var count = 0;
        foreach (var provider in providers)
            if (_load.TryGetValue(provider, out var load) && load.TryGetLatency(out var latency)) samples[count++] = latency;
        if (count == 0) return 0;
        samples = samples[..count];
        samples.Sort();
        return count % 2 == 1 ? samples[count / 2] : (samples[count / 2 - 1] + samples[count / 2]) / 2;
    }

    /// <summary>The topic's providers: from the cache while it is fresh (without touching the deadline's timer), else looked up on the deadline's token.</summary>
    private ValueTask<PeerId[]> GetProvidersAsync(string topic, TopicCallDeadline deadline)
    {
        if (_cache.TryGetValue(topic, out var cached) && cached.Peers.Length > 0 && _options.TimeProvider.GetElapsedTime(cached.FetchedAt) < _options.TopicCacheTtl)
            return ValueTask.FromResult(cached.Peers);
        return new ValueTask<PeerId[]>(LookUpProvidersAsync(topic, deadline.Token));
    }

    private async Task<PeerId[]> LookUpProvidersAsync(string topic, CancellationToken cancellationToken)
    {
        var time = _options.TimeProvider;
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

    /// <summary>
    /// One topic call's walk over the providers: each tried at most once, those refusing the callee check skipped
    /// (not an attempt: nothing was sent), at most <see cref="RpcOptions.MaxTopicAttempts"/> attempts, and one
    /// deadline for them all, lookups and checks included, so fail-over spends what is left of the caller's budget.
    /// </summary>
    private sealed class TopicAttempts : IDisposable
    {
        private readonly RpcTopicRouter _router;
        private readonly string _topic;
        private readonly RpcCallOptions _options;
        private readonly TopicCallDeadline _deadline;
        private readonly HashSet<PeerId> _tried = [];
        private int _attempts;
        private RpcException? _last;
        private RpcException? _skipped;
        private bool _anyMaybeDelivered;

        public TopicAttempts(RpcTopicRouter router, string topic, RpcCallOptions? options, CancellationToken cancellationToken)
        {
            ArgumentException.ThrowIfNullOrEmpty(topic);
            _router = router;
            _topic = topic;
            _options = options ?? RpcCallOptions.Default;
            Options = router.WithOneDeadline(_options);
            _deadline = new TopicCallDeadline(Options.Deadline, router._options.TimeProvider, cancellationToken);
        }

        /// <summary>What each attempt is sent with: the caller's options with the one deadline.</summary>
        public RpcCallOptions Options { get; }

        /// <summary>The provider to try next; null when none is left or the attempts are spent.</summary>
        /// <exception cref="RpcException"><see cref="RpcStatusCode.DeadlineExceeded"/> when the deadline passes before a provider is found that may be called.</exception>
        public async ValueTask<PeerId?> NextAsync()
        {
            while (_attempts < _router._options.MaxTopicAttempts)
            {
                if (_deadline.HasPassed) throw PastDeadline();
                PeerId[] providers;
                try
                {
                    providers = await _router.GetProvidersAsync(_topic, _deadline);
                }
                catch (OperationCanceledException) when (_deadline.HasPassed)
                {
                    throw LookupPastDeadline(_topic);
                }
                var peer = _router.Choose(providers, _tried);
                if (peer is null) return null;
                _tried.Add(peer);
                if (_options.CalleeCheck is not { } check)
                {
                    _attempts++;
                    return peer;
                }
                RpcException? refused;
                try
                {
                    refused = await check(peer, _deadline.Token);
                }
                catch (OperationCanceledException) when (_deadline.HasPassed)
                {
                    throw CheckPastDeadline(_topic, peer);
                }
                if (refused is not null)
                {
                    // The reason quoted is a provider's own answer when there is one: that a provider was unreachable says less than that one answered with no right to serve.
                    if (_skipped is null || refused.InnerException is null || _skipped.InnerException is not null) _skipped = refused;
                    _router._logger.LogDebug("topic {Topic}: provider {Peer} skipped: {Message}", _topic, peer, refused.Message);
                    continue;
                }
                _attempts++;
                return peer;
            }
            return null;
        }

        private RpcException PastDeadline() => _skipped is null
            ? new RpcException(RpcStatusCode.DeadlineExceeded, $"the deadline passed before a provider of topic '{_topic}' could be called")
            : new RpcException(RpcStatusCode.DeadlineExceeded,
                $"the deadline passed before a provider of topic '{_topic}' could be called; last skipped: {_skipped.Message}", innerException: _skipped);

        public void Dispose() => _deadline.Dispose();

        /// <summary>Evicts <paramref name="peer"/>, which was unavailable; false when the call must fail with <paramref name="error"/>.</summary>
        public bool MayGoOnAfter(PeerId peer, RpcException error)
        {
            _router.Evict(peer);
            _last = error;
            _anyMaybeDelivered |= !error.NotDelivered;
            // A call that provably never arrived cannot run twice: any call may go on to the next provider.
            if (!_options.Idempotent && !error.NotDelivered) return false;
            _router._logger.LogDebug("topic {Topic}: provider {Peer} unavailable ({Message}); trying another", _topic, peer, error.Message);
            return true;
        }

        /// <summary>
        /// The call's error once no provider is left: marked <see cref="RpcException.NotDelivered"/> when none of them may
        /// have received the request (each skipped by the check or refusing it unread), so the caller may try elsewhere.
        /// </summary>
        public RpcException Exhausted()
        {
            var error = Unavailable();
            return _anyMaybeDelivered ? error : error.AsUndelivered();
        }

        private RpcException Unavailable()
        {
            if (_last is null && _skipped is not null)
            {
                // Every provider failed the callee check: the cache holds nobody worth calling, so the next call looks again
                // (as when nobody provides the topic) instead of waiting out the TTL while a valid provider may have come.
                _router._cache.TryRemove(_topic, out _);
                return new RpcException(RpcStatusCode.Unavailable, $"no provider of topic '{_topic}' may be called: {_skipped.Message}", innerException: _skipped);
            }
            return _last is null
                ? new RpcException(RpcStatusCode.Unavailable, $"no provider of topic '{_topic}'")
                : new RpcException(RpcStatusCode.Unavailable, $"no provider of topic '{_topic}' answered; last error: {_last.Message}", innerException: _last);
        }
    }

    /// <summary>
    /// How long the last failure keeps a provider's penalty. Only an answer clears it, and an avoided provider
    /// gets no calls to answer: a processor that failed while it restarted would be shunned for as long as a
    /// working one is beside it. Once this passes it competes at its plain cost again; if it fails again, the
    /// penalty comes back doubled, so a provider that stays hung costs a caller one call per period.
    /// </summary>
    internal static readonly TimeSpan FailureMemory = TimeSpan.FromSeconds(30);

    private sealed record CachedTopic(PeerId[] Peers, long FetchedAt);

    private sealed class PeerLoad
    {
        /// <summary>Failures in a row that still raise the penalty: past it a provider costs 1,024 times its latency, as good as never chosen beside a working one until its last failure is <see cref="FailureMemory"/> old.</summary>
        private const int MaxFailuresCounted = 10;

        private readonly object _gate = new();
        public int InFlight;
        private double _latencyMs;
        private bool _sampled;

        private int _failures;
        private long _lastFailure;

        /// <summary>
        /// 2^(calls in a row that ended without an answer), up to 2^<see cref="MaxFailuresCounted"/>, while the last
        /// of them is less than <see cref="FailureMemory"/> old; 1 otherwise, and once it answers again.
        /// </summary>
        public double FailurePenalty(long now, TimeProvider time)
        {
            lock (_gate)
                return _failures == 0 || time.GetElapsedTime(_lastFailure, now) >= FailureMemory ? 1 : 1 << _failures;
        }

        /// <summary>A call ended without an answer (unavailable, or past its deadline) at <paramref name="now"/>.</summary>
        public void RecordFailure(long now)
        {
            lock (_gate)
            {
                if (_failures < MaxFailuresCounted) _failures++;
                _lastFailure = now;
            }
        }

        /// <summary>The latency average; false while no sample was recorded.</summary>
        public bool TryGetLatency(out double ms)
        {
            lock (_gate)
            {
                ms = _latencyMs;
                return _sampled;
            }
        }

        public void Record(double ms, double alpha)
        {
            lock (_gate)
            {
                _latencyMs = _sampled ? alpha * ms + (1 - alpha) * _latencyMs : ms;
                _sampled = true;
                _failures = 0;
            }
        }
    }
}
