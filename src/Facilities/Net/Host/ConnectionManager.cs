using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;

using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// Keeps one connection per peer. When two end up open to the same peer (both dialed at once),
/// both sides keep the one dialed by the smaller PeerId and retire the other: it gets a Yamux
/// go-away and is closed once its last stream ends — never while a stream is open. Connections
/// with no stream for <see cref="HostOptions.IdleConnectionTimeout"/> are closed the same way.
/// A direct connection is preferred over a relayed one to the same peer (new streams go on it), and
/// the relayed one is retired once the direct one has lasted <see cref="HostOptions.RelayedConnectionGracePeriod"/>
/// (DCUtR's migration); the tie-break by dialer applies only between two of the same kind.
/// </summary>
internal sealed class ConnectionManager : IAsyncDisposable
{
    private readonly Dictionary<PeerId, List<PeerConnection>> _byPeer = [];
    private readonly HostOptions _options;
    private readonly ILogger _logger;
    private readonly ITimer _maintenance;
    private bool _disposed;

    public ConnectionManager(HostOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
        _maintenance = options.TimeProvider.CreateTimer(_ => Maintain(), null, options.MaintenanceInterval, options.MaintenanceInterval);
    }

    public event Action<PeerConnection>? Connected;
    public event Action<PeerConnection>? Disconnected;

    public int Count
    {
        get
        {
            lock (_byPeer) return _byPeer.Values.Sum(l => l.Count);
        }
    }

    public IReadOnlyList<PeerConnection> All
    {
        get
        {
            lock (_byPeer) return _byPeer.Values.SelectMany(l => l).ToArray();
        }
    }

    /// <summary>Open connections with <paramref name="peer"/>, either way, retired ones included.</summary>
    public int CountOf(PeerId peer)
    {
        lock (_byPeer) return _byPeer.TryGetValue(peer, out var list) ? list.Count : 0;
    }

    /// <summary>The connection new streams to <paramref name="peer"/> should use, if any.</summary>
    public PeerConnection? Get(PeerId peer)
    {
        lock (_byPeer)
        {
            if (!_byPeer.TryGetValue(peer, out var list)) return null;
            PeerConnection? relayed = null;
            foreach (var c in list)
            {
                if (c.IsDraining || c.IsClosed || c.IsRetired) continue;
                if (!c.IsRelayed) return c;
                relayed ??= c;
            }
            return relayed;
        }
    }

    /// <summary>Adds an upgraded connection; returns false (and the caller disposes it) after shutdown.</summary>
    public bool Add(PeerConnection connection)
    {
        PeerConnection? loser = null;
        lock (_byPeer)
        {
            if (_disposed) return false;
            if (!_byPeer.TryGetValue(connection.RemotePeer, out var list))
                _byPeer[connection.RemotePeer] = list = [];
            // A relayed and a direct connection are not duplicates: the relayed one gives way to the direct
            // one after a grace period (Maintain), whoever dialed which.
            var current = list.FirstOrDefault(c => !c.IsDraining && !c.IsClosed && c.IsRelayed == connection.IsRelayed);
            list.Add(connection);
            // A simultaneous dial (one connection each way) or two racing dials of ours leave a duplicate to
            // retire. When the remote dials twice it chose to (js-libp2p may dial a peer's addresses in
            // parallel): closing one at once would fail the upgrade it is still finishing on its side.
            // MaxConnectionsPerPeer and the idle timeout bound such extras.
            if (current is not null && (current.Dialer != connection.Dialer || connection.Direction == ConnectionDirection.Outbound))
                loser = PreferredOf(current, connection) == current ? connection : current;
        }
        connection.OnClosed(s_remove, this);
        EventSubscribers.Raise(Connected, connection, _logger, $"{nameof(P2PHost)}.{nameof(P2PHost.PeerConnected)}");
        if (loser is not null) Retire(loser);
        return true;
    }

    private static readonly Action<PeerConnection, object?> s_remove = static (connection, manager) => ((ConnectionManager)manager!).Remove(connection);

    /// <summary>Of a simultaneous dial's two connections, the one both sides keep (dialed by the lower PeerId); of two of our own dials, the older.</summary>
    private static PeerConnection PreferredOf(PeerConnection existing, PeerConnection added)
    {
        var byDialer = existing.Dialer.CompareTo(added.Dialer);
        if (byDialer != 0) return byDialer < 0 ? existing : added;
        return existing;
    }

    private void Retire(PeerConnection connection)
    {
        if (!connection.MarkDraining()) return;
        _logger.LogDebug("retiring duplicate connection {Connection}", connection);
        _ = GoAwayQuietlyAsync(connection);
    }

    private static async Task GoAwayQuietlyAsync(PeerConnection connection)
    {
        try
        {
            await connection.Session.GoAwayAsync(CancellationToken.None);
            if (connection.StreamCount == 0) await connection.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    private void Remove(PeerConnection connection)
    {
        var removed = false;
        lock (_byPeer)
        {
            if (_byPeer.TryGetValue(connection.RemotePeer, out var list))
            {
                removed = list.Remove(connection);
                if (list.Count == 0) _byPeer.Remove(connection.RemotePeer);
            }
        }
        if (!removed) return;
        EventSubscribers.Raise(Disconnected, connection, _logger, $"{nameof(P2PHost)}.{nameof(P2PHost.PeerDisconnected)}");
    }

    private void Maintain()
    {
        RetireRelayedSupersededByDirect();
        foreach (var connection in All)
        {
            if (connection.TryRetireIfIdle(_options.IdleConnectionTimeout))
            {
                _logger.LogDebug("closing idle connection {Connection}", connection);
                _ = connection.DisposeAsync().AsTask();
            }
        }
    }

    /// <summary>
    /// The spec's migration: streams already on a relayed connection get the grace period to finish
    /// (new ones go on the direct connection from the start), then the relayed one drains and closes.
    /// </summary>
    private void RetireRelayedSupersededByDirect()
    {
        var grace = _options.RelayedConnectionGracePeriod;
        List<PeerConnection>? superseded = null;
        lock (_byPeer)
        {
            foreach (var list in _byPeer.Values)
            {
                if (!list.Any(c => c.IsRelayed)) continue;
                if (!list.Any(c => !c.IsRelayed && !c.IsDraining && !c.IsClosed && c.Age >= grace)) continue;
                foreach (var c in list)
                    if (c.IsRelayed && !c.IsDraining) (superseded ??= []).Add(c);
            }
        }
        foreach (var connection in superseded ?? [])
        {
            _logger.LogDebug("retiring relayed connection {Connection}: a direct one to the peer is open", connection);
            Retire(connection);
        }
    }

    public async ValueTask DisposeAsync()
    {
        PeerConnection[] all;
        lock (_byPeer)
        {
            _disposed = true;
            all = _byPeer.Values.SelectMany(l => l).ToArray();
        }
        await _maintenance.DisposeAsync();
        await Task.WhenAll(all.Select(async c =>
        {
            try
            {
                await c.DisposeAsync();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
            }
        }));
    }
}
