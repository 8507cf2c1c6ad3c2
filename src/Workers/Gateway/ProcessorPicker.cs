using P2PInference.Facilities.Encoding;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Workers.Gateway;

/// <summary>
/// Chooses the processor for a request. The RPC layer balances unary topic calls but has no topic
/// streaming call, so the gateway does its own choice for both kinds of request: the providers of
/// <see cref="WorkerTopics.Model"/> are asked for their status (<see cref="IRpcClient.RequestAllAsync"/>,
/// which also tells the RPC node their addresses), kept for <see cref="GatewayOptions.ProcessorCacheTtl"/>
/// from when that fetch ended (so a fetch slower than the TTL is not started again by the next request),
/// and each request takes the cheaper of two picked at random (power of two choices), the cost being
/// this gateway's calls in flight to it plus the load it reported beyond them. A processor that
/// fails with a connection error is dropped from the cache until the next refresh.
/// </summary>
internal sealed class ProcessorPicker
{
    /// <summary>Models whose processors are remembered at most; requests may name any model, so this is bounded.</summary>
    internal const int MaxCachedModels = 1024;

    private const int FullPenalty = 1_000_000;

    private readonly IRpcClient _client;
    private readonly GatewayOptions _options;
    private readonly TimeProvider _time;
    private readonly Random _random;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly Dictionary<string, Slot> _models = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<PeerId, StrongBox<int>> _inFlight = new();
    private readonly ConcurrentDictionary<PeerId, Provider> _reported = new();

    public ProcessorPicker(IRpcClient client, GatewayOptions options, TimeProvider time, Random random, ILogger logger)
    {
        _client = client;
        _options = options;
        _time = time;
        _random = random;
        _logger = logger;
    }

    /// <summary>This gateway's calls in flight to <paramref name="peer"/>.</summary>
    public int InFlight(PeerId peer) => _inFlight.TryGetValue(peer, out var box) ? Volatile.Read(ref box.Value) : 0;

    /// <summary>
    /// A processor of <paramref name="model"/> not in <paramref name="exclude"/>, or null when there is none.
    /// When every cached one was tried, the processors are asked again once (new ones may have come).
    /// </summary>
    /// <exception cref="RpcException"><see cref="RpcStatusCode.Unavailable"/> when the lookup itself failed.</exception>
    public async Task<PeerId?> PickAsync(string model, IReadOnlySet<PeerId> exclude, string requestId, CancellationToken cancellationToken)
    {
        var slot = GetSlot(model, forceRefresh: false);
        var providers = await slot.Fetch.WaitAsync(cancellationToken);
        var candidates = Candidates(slot, providers, exclude);
        if (candidates.Length == 0 && exclude.Count > 0)
        {
            var fresh = GetSlot(model, forceRefresh: true, stale: slot);
            providers = await fresh.Fetch.WaitAsync(cancellationToken);
            candidates = Candidates(fresh, providers, exclude);
        }
        if (candidates.Length == 0) return null;
        var chosen = Choose(candidates);
        GatewayLog.ProcessorChosen(_logger, requestId, chosen, model, candidates.Length);
        return chosen;
    }

    /// <summary>Counts a call to <paramref name="peer"/> as in flight until the lease is disposed.</summary>
    public Lease Acquire(PeerId peer)
    {
        var box = _inFlight.GetOrAdd(peer, static _ => new StrongBox<int>());
        Interlocked.Increment(ref box.Value);
        return new Lease(box);
    }

    /// <summary>
    /// The most tokens <paramref name="peer"/> said it generates for <paramref name="model"/> (its status's
    /// model list, fetched when it was picked), or 0 when it did not say.
    /// </summary>
    public int AdvertisedMaxTokens(string model, PeerId peer)
    {
        lock (_gate)
        {
            if (!_models.TryGetValue(model, out var slot) || !slot.Fetch.IsCompletedSuccessfully) return 0;
            foreach (var provider in slot.Fetch.Result)
                if (provider.Peer == peer) return provider.ModelMaxTokens;
            return 0;
        }
    }

    /// <summary>Stops choosing <paramref name="peer"/> for <paramref name="model"/> until the processors are asked again.</summary>
    /// <summary>
    /// How many processors of <paramref name="model"/> the last lookup found but could not use: unreachable, silent, or
    /// refused by the grant check. When no processor could be used, this tells a gateway cut off from its processors
    /// (or offered only ungranted ones) from a model nobody announces.
    /// </summary>
    public int Unusable(string model)
    {
        lock (_gate)
            return _models.TryGetValue(model, out var slot) ? slot.Unusable : 0;
    }

    public void Evict(string model, PeerId peer)
    {
        lock (_gate)
        {
            if (_models.TryGetValue(model, out var slot)) slot.Evicted.Add(peer);
        }
    }

    private PeerId[] Candidates(Slot slot, Provider[] providers, IReadOnlySet<PeerId> exclude)
    {
        lock (_gate)
        {
            var count = 0;
            foreach (var provider in providers)
                if (!exclude.Contains(provider.Peer) && !slot.Evicted.Contains(provider.Peer)) count++;
            if (count == 0) return [];
            var candidates = new PeerId[count];
            count = 0;
            foreach (var provider in providers)
                if (!exclude.Contains(provider.Peer) && !slot.Evicted.Contains(provider.Peer)) candidates[count++] = provider.Peer;
            return candidates;
        }
    }

    private PeerId Choose(PeerId[] candidates)
    {
        if (candidates.Length == 1) return candidates[0];
        int first, second;
        lock (_random)
        {
            first = _random.Next(candidates.Length);
            second = _random.Next(candidates.Length - 1);
        }
        if (second >= first) second++;
        return Cost(candidates[second]) < Cost(candidates[first]) ? candidates[second] : candidates[first];
    }

    private long Cost(PeerId peer)
    {
        long cost = InFlight(peer);
        if (_reported.TryGetValue(peer, out var reported)) cost += reported.OtherLoad + (reported.Full ? FullPenalty : 0);
        return cost;
    }

    private Slot GetSlot(string model, bool forceRefresh, Slot? stale = null)
    {
        lock (_gate)
        {
            if (_models.TryGetValue(model, out var slot))
            {
                var fresh = !slot.Fetch.IsCompleted
                            || (slot.Fetch.IsCompletedSuccessfully && slot.Fetch.Result.Length > 0
                                && _time.GetElapsedTime(slot.FetchedAt) < _options.ProcessorCacheTtl);
                // A forced refresh by several requests at once runs once: only the one that saw the stale slot starts it.
                if (forceRefresh ? !ReferenceEquals(slot, stale) : fresh) return slot;
            }
            if (_models.Count >= MaxCachedModels) TrimLocked();
            slot = new Slot(_time.GetTimestamp());
            _models[model] = slot;
            slot.Fetch = FetchAsync(model, slot);
            return slot;
        }
    }

    private void TrimLocked()
    {
        foreach (var (model, slot) in _models)
            if (slot.Fetch.IsCompleted && _time.GetElapsedTime(slot.FetchedAt) >= _options.ProcessorCacheTtl) _models.Remove(model);
        if (_models.Count < MaxCachedModels) return;
        foreach (var (model, slot) in _models)
            if (slot.Fetch.IsCompleted) _models.Remove(model);
    }

    private async Task<Provider[]> FetchAsync(string model, Slot slot)
    {
        await Task.Yield(); // run outside the lock of GetSlot
        var topic = WorkerTopics.Model(model);
        // Shared by every request waiting for it, so it runs on no one request's token or deadline.
        var options = new RpcCallOptions { Timeout = _options.BackendTimeout, Idempotent = true };
        IReadOnlyList<RpcPeerResult> results;
        try
        {
            results = await StatusOfAllAsync(topic, options);
            // The RPC node answers from its cache of the topic's providers and drops those that were
            // unreachable; when none was left, asking again makes it look the topic up afresh.
            // Not when the trust check skipped them all: nothing was called, and the router looks the topic up afresh anyway.
            if (results.Count > 0 && results.All(r => r.Error?.Code == RpcStatusCode.Unavailable) && !results.All(r => r.Skipped))
                results = await StatusOfAllAsync(topic, options);
        }
        catch (RpcException e)
        {
            _logger.LogWarning("processors of model {Model}: lookup failed: {Message}", model, e.Message);
            throw new RpcException(RpcStatusCode.Unavailable, $"no processor serves model '{model}': looking them up failed: {e.Message}", innerException: e);
        }
        var providers = new List<Provider>(results.Count);
        var unusable = 0;
        foreach (var result in results)
        {
            if (result.Error is { } error)
            {
                if (error.Code is RpcStatusCode.Unavailable or RpcStatusCode.DeadlineExceeded) unusable++;
                // Busy is alive: still a candidate, if a poor one.
                if (error.Code == RpcStatusCode.ResourceExhausted) providers.Add(new Provider(result.Peer, 0, Full: true, ModelMaxTokens: 0));
                else _logger.LogDebug("processors of model {Model}: {Peer} did not answer status: {Code} {Message}", model, result.Peer, error.Code, error.Message);
                continue;
            }
            StatusResponse status;
            try
            {
                status = StatusResponse.Parser.Decode(result.Response);
            }
            catch (MalformedMessageException e)
            {
                _logger.LogDebug("processors of model {Model}: {Peer} sent a malformed status: {Message}", model, result.Peer, e.Message);
                continue;
            }
            // A stale DHT record: the peer no longer lists the model it once announced.
            if (status.Models.Count > 0 && status.Models.All(m => m.Name != model)) continue;
            var reported = Math.Max(0, status.Active) + Math.Max(0, status.Queued);
            var full = status.MaxQueue > 0 && status.MaxConcurrency > 0 && status.Queued >= status.MaxQueue && status.Active >= status.MaxConcurrency;
            var advertised = status.Models.FirstOrDefault(m => m.Name == model)?.MaxTokens ?? 0;
            providers.Add(new Provider(result.Peer, Math.Max(0, reported - InFlight(result.Peer)), full, Math.Max(0, advertised)));
        }
        foreach (var provider in providers) _reported[provider.Peer] = provider;
        _logger.LogDebug("processors of model {Model}: {Count} found", model, providers.Count);
        // The TTL counts from now: stamped at the start, a fetch slower than the TTL was stale on arrival
        // and the next request started another (a provider that never answers made every one wait).
        lock (_gate)
        {
            slot.FetchedAt = _time.GetTimestamp();
            slot.Unusable = unusable;
        }
        return [.. providers];
    }

    private Task<IReadOnlyList<RpcPeerResult>> StatusOfAllAsync(string topic, RpcCallOptions options) =>
        _client.RequestAllAsync(topic, WorkerMethods.Processor.Status, new StatusRequest().ToByteArray(), options, CancellationToken.None);

    private sealed record Provider(PeerId Peer, int OtherLoad, bool Full, int ModelMaxTokens);

    private sealed class Slot(long startedAt)
    {
        /// <summary>When the fetch started, then when it ended successfully; read and written under the picker's lock.</summary>
        public long FetchedAt { get; set; } = startedAt;
        public Task<Provider[]> Fetch { get; set; } = null!;
        public HashSet<PeerId> Evicted { get; } = [];
        /// <summary>Set with <see cref="FetchedAt"/> when the fetch ends, under the picker's lock.</summary>
        public int Unusable { get; set; }
    }

    /// <summary>One call in flight to a processor.</summary>
    public readonly struct Lease(StrongBox<int> box) : IDisposable
    {
        public void Dispose() => Interlocked.Decrement(ref box.Value);
    }
}
