using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;

namespace P2PInference.TestKit.Discovery;

/// <summary>
/// One peer's <see cref="IDiscovery"/> on a <see cref="MockDhtRegistry"/>; made by
/// <see cref="MockDhtRegistry.CreateNode"/>. Announcing publishes a record at once and re-announces
/// it every <see cref="MockDhtRegistry.ReannounceInterval"/> while the node lives.
/// <see cref="DisposeAsync"/> is a graceful stop (withdraws the node's records); <see cref="Crash"/>
/// stops without a goodbye (the records go stale and expire after the TTL). A lookup sees every node's
/// records, this node's own included.
/// </summary>
public sealed class MockDht : IDiscovery, IAsyncDisposable
{
    private readonly MockDhtRegistry _registry;
    private readonly Dictionary<string, ITimer> _announced = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _joined;
    private int _lookups;
    private bool _stopped;

    internal MockDht(MockDhtRegistry registry, PeerId peerId, IReadOnlyList<Multiaddress> addresses, TimeSpan joinDelay)
    {
        _registry = registry;
        PeerId = peerId;
        Addresses = addresses;
        _joined = joinDelay > TimeSpan.Zero ? Task.Delay(joinDelay, registry.TimeProvider, _stopping.Token) : Task.CompletedTask;
    }

    public PeerId PeerId { get; }

    /// <summary>The addresses this node's records carry.</summary>
    public IReadOnlyList<Multiaddress> Addresses { get; }

    public MockDhtRegistry Registry => _registry;

    /// <summary>False once the node crashed or was disposed.</summary>
    public bool IsAlive
    {
        get
        {
            lock (_registry.Gate)
            {
                return !_stopped;
            }
        }
    }

    /// <summary>The topics this node announces (and re-announces).</summary>
    public IReadOnlyList<string> AnnouncedTopics
    {
        get
        {
            lock (_registry.Gate)
            {
                return [.. _announced.Keys];
            }
        }
    }

    /// <summary>How many lookups this node has started.</summary>
    public int LookupCount => Volatile.Read(ref _lookups);

    /// <inheritdoc />
    public Task AnnounceAsync(string topic, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(topic);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_registry.Gate)
        {
            ThrowIfStoppedLocked();
            _registry.PublishLocked(topic, this);
            if (!_announced.ContainsKey(topic))
            {
                var interval = _registry.ReannounceInterval;
                var timer = _registry.TimeProvider.CreateTimer(
                    static state => ((Reannouncement)state!).Run(), new Reannouncement(this, topic), interval, interval);
                _announced.Add(topic, timer);
            }
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc />
    /// <remarks>Withdraws the record at once, unless <see cref="MockDhtRegistry.StaleRecords"/> is set.</remarks>
    public Task UnannounceAsync(string topic, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(topic);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_registry.Gate)
        {
            ThrowIfStoppedLocked();
            WithdrawLocked(topic);
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Takes <see cref="MockDhtRegistry.LookupDelay"/> of the registry's time, then applies
    /// <see cref="MockDhtRegistry.FailLookups"/> and <see cref="MockDhtRegistry.MissingRecords"/> to the
    /// records unexpired at that moment. Completes synchronously when there is no delay.
    /// </remarks>
    /// <exception cref="ObjectDisposedException">The node crashed or was disposed, before or during the lookup.</exception>
    public Task<IReadOnlyList<DiscoveredPeer>> LookupAsync(string topic, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(topic);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_registry.Gate)
        {
            ThrowIfStoppedLocked();
        }

        _ = Interlocked.Increment(ref _lookups);
        var lookup = _registry.BeginLookup(PeerId, topic);
        var delay = _registry.LookupDelay;
        if (delay == TimeSpan.Zero)
        {
            try
            {
                return Task.FromResult(_registry.CompleteLookup(lookup));
            }
            catch (Exception e)
            {
                return Task.FromException<IReadOnlyList<DiscoveredPeer>>(e);
            }
        }

        return DelayedLookupAsync(lookup, delay, cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>At once, or <see cref="MockDhtRegistry.JoinDelay"/> after the node was created.</remarks>
    public Task WaitUntilJoinedAsync(CancellationToken cancellationToken)
    {
        lock (_registry.Gate)
        {
            ThrowIfStoppedLocked();
        }

        return _joined.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Stops the node without a goodbye, as a killed process: it re-announces nothing more and
    /// withdraws nothing, so its records stay findable until they expire. In-flight lookups fail.
    /// </summary>
    public void Crash()
    {
        lock (_registry.Gate)
        {
            if (_stopped)
            {
                return;
            }

            foreach (var timer in _announced.Values)
            {
                timer.Dispose();
            }

            _announced.Clear();
            StopLocked();
        }

        _stopping.Cancel();
    }

    /// <summary>Graceful stop: unannounces every topic (see <see cref="MockDhtRegistry.StaleRecords"/>), then stops.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_registry.Gate)
        {
            if (_stopped)
            {
                return ValueTask.CompletedTask;
            }

            foreach (var topic in _announced.Keys.ToList())
            {
                WithdrawLocked(topic);
            }

            StopLocked();
        }

        _stopping.Cancel();
        return ValueTask.CompletedTask;
    }

    public override string ToString() => $"MockDht({PeerId})";

    private async Task<IReadOnlyList<DiscoveredPeer>> DelayedLookupAsync(MockDhtLookup lookup, TimeSpan delay, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        try
        {
            await Task.Delay(delay, _registry.TimeProvider, linked.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ObjectDisposedException(ToString(), "The node stopped during the lookup.");
        }

        lock (_registry.Gate)
        {
            ThrowIfStoppedLocked();
        }

        return _registry.CompleteLookup(lookup);
    }

    private void WithdrawLocked(string topic)
    {
        if (_announced.Remove(topic, out var timer))
        {
            timer.Dispose();
            _registry.WithdrawLocked(topic, PeerId);
        }
    }

    private void StopLocked()
    {
        _stopped = true;
        _registry.RemoveLiveLocked(this);
    }

    private void ThrowIfStoppedLocked() => ObjectDisposedException.ThrowIf(_stopped, this);

    private void ReannounceLocked(string topic)
    {
        // A timer callback can race with its own disposal; only a topic still announced is refreshed.
        if (!_stopped && _announced.ContainsKey(topic))
        {
            _registry.PublishLocked(topic, this);
        }
    }

    private sealed class Reannouncement(MockDht node, string topic)
    {
        public void Run()
        {
            lock (node._registry.Gate)
            {
                node.ReannounceLocked(topic);
            }
        }
    }
}
