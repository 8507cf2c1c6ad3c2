using System.Buffers;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Host;

/// <summary>An upgraded connection: authenticated (Noise) and multiplexed (Yamux) to a known peer.</summary>
public sealed class PeerConnection : IAsyncDisposable
{
    private readonly TimeProvider _time;
    // The connection's one lock, for the identify exchange, the idle decision and the close callbacks:
    // none is held long or calls out while held (identify's start, run under it, yields at once), and a
    // lock apiece cost each connection two more objects for its whole life.
    private readonly Lock _gate = new();
    private Task<IdentifyOutcome>? _identify;
    private long _lastActiveTimestamp;
    private readonly long _openedTimestamp;
    private int _draining;
    private int _identifyPushInFlight;
    // Guards the idle decision against a stream being opened at the same moment: either the opener
    // touches the connection first (then it is not idle) or the closer retires it first (then the
    // opener takes another connection); never a stream opened on a connection being closed.
    private bool _retired;
    private int _keepOpen;
    // What the host does when the connection ends (forget it, free its inbound slot, cancel its
    // handlers): run by one continuation on Completion, so an open connection holds no pending awaits.
    private CloseCallback[]? _onClosed;
    private int _onClosedCount;
    private bool _closeRan;
    // Whether the remote address is a proxy's rather than the peer's (HostOptions.InboundPeersArePublic).
    private readonly bool _addressHidesPeer;
    private string? _origin;

    internal PeerConnection(YamuxSession session, PeerId localPeer, PeerId remotePeer, PublicKey remotePublicKey,
        Multiaddress localAddress, Multiaddress remoteAddress, AddressScope remoteScope, ConnectionDirection direction, TimeProvider time,
        bool addressHidesPeer = false)
    {
        _addressHidesPeer = addressHidesPeer;
        Session = session;
        LocalPeer = localPeer;
        RemotePeer = remotePeer;
        RemotePublicKey = remotePublicKey;
        LocalAddress = localAddress;
        RemoteAddress = remoteAddress;
        Direction = direction;
        RemoteScope = remoteScope;
        _time = time;
        _lastActiveTimestamp = time.GetTimestamp();
        _openedTimestamp = _lastActiveTimestamp;
        // An await's continuation, not ContinueWith on TaskScheduler.Default: it runs on the context the
        // connection was made on (a simulation's thread, as its node), on the thread pool in production.
        session.Completion.GetAwaiter().OnCompleted(RunCloseCallbacks);
    }

    public YamuxSession Session { get; }
    public PeerId LocalPeer { get; }
    public PeerId RemotePeer { get; }
    public PublicKey RemotePublicKey { get; }
    public Multiaddress LocalAddress { get; }
    public Multiaddress RemoteAddress { get; }
    public ConnectionDirection Direction { get; }

    /// <summary>
    /// The scope of the network the peer is on, which bounds the addresses it may name to us and those we
    /// tell it: its address's, or public for an inbound peer when <see cref="HostOptions.InboundPeersArePublic"/>.
    /// </summary>
    public AddressScope RemoteScope { get; }

    /// <summary>
    /// The origin (<see cref="AddressOrigin"/>) that limits per origin count this peer under; null when the
    /// connection's address says nothing about who the peer is: loopback (the operator's own machine, exempt
    /// as from the inbound cap per address), or an inbound peer when <see cref="HostOptions.InboundPeersArePublic"/>
    /// says the address is a proxy's. Worked out when first asked: most connections never are.
    /// </summary>
    public string? Origin
    {
        get
        {
            if (_addressHidesPeer) return null;
            _origin ??= AddressOrigin.ForLimits(RemoteAddress) ?? string.Empty;
            return _origin.Length == 0 ? null : _origin;
        }
    }

    /// <summary>
    /// The connection runs under limits another party set (a relay's <c>Limit</c>: duration and bytes)
    /// and may be cut when they are reached; keep bulk traffic off it.
    /// </summary>
    public bool IsLimited { get; internal init; }

    /// <summary>The connection goes through a circuit relay (its remote address has <c>/p2p-circuit</c>).</summary>
    public bool IsRelayed => RemoteAddress.Has(MultiaddressProtocol.P2pCircuit);

    public int StreamCount => Session.StreamCount;
    public bool IsClosed => Session.IsClosed;
    public Task Completion => Session.Completion;

    /// <summary>
    /// What the remote told about itself in this connection's identify exchange; null while it
    /// runs, when it failed, or before it started.
    /// </summary>
    public IdentifyInfo? RemoteIdentify => _identify is { IsCompletedSuccessfully: true } done ? done.Result.Info : null;

    /// <summary>
    /// This connection's one identify exchange: the running or finished one, or a new one from
    /// <paramref name="run"/> if none started yet. libp2p peers serve one identify stream per
    /// connection (js-libp2p resets a second one), so the result is shared, failures included.
    /// <paramref name="run"/> ends with an outcome, not an exception.
    /// </summary>
    internal Task<IdentifyOutcome> GetOrStartIdentify(Func<PeerConnection, Task<IdentifyOutcome>> run)
    {
        lock (_gate)
        {
            if (_identify is not null) return _identify;
            _identify = run(this);
        }
        return _identify;
    }

    /// <summary>The peer that dialed this connection; used to break ties between duplicate connections.</summary>
    internal PeerId Dialer => Direction == ConnectionDirection.Outbound ? LocalPeer : RemotePeer;

    /// <summary>True once the host decided to retire this connection (a duplicate); it closes when idle.</summary>
    internal bool IsDraining => Volatile.Read(ref _draining) != 0;

    /// <summary>False while another identify push from the peer is being read (see <see cref="P2PHost"/>'s push handler).</summary>
    internal bool TryBeginIdentifyPush() => Interlocked.Exchange(ref _identifyPushInFlight, 1) == 0;

    internal void EndIdentifyPush() => Volatile.Write(ref _identifyPushInFlight, 0);

    internal bool MarkDraining() => Interlocked.Exchange(ref _draining, 1) == 0;

    /// <summary>How long ago the connection was made, on the host's clock.</summary>
    internal TimeSpan Age => _time.GetElapsedTime(_openedTimestamp);

    internal TimeSpan IdleFor => StreamCount > 0 ? TimeSpan.Zero : _time.GetElapsedTime(Volatile.Read(ref _lastActiveTimestamp));

    internal void Touch() => Volatile.Write(ref _lastActiveTimestamp, _time.GetTimestamp());

    /// <summary>
    /// Keeps the connection from being closed as idle until the matching <see cref="ReleaseKeepOpen"/>:
    /// a relay reservation lives on the connection it was made on, without a stream open between uses.
    /// A duplicate being retired still closes.
    /// </summary>
    internal void KeepOpen() => Interlocked.Increment(ref _keepOpen);

    internal void ReleaseKeepOpen() => Interlocked.Decrement(ref _keepOpen);

    /// <summary>True once the host decided to close this connection as idle; no new stream goes on it.</summary>
    internal bool IsRetired
    {
        get
        {
            lock (_gate) return _retired;
        }
    }

    /// <summary>Retires the connection when it has no stream and is draining or has been idle for <paramref name="timeout"/>; the caller then closes it.</summary>
    internal bool TryRetireIfIdle(TimeSpan timeout)
    {
        lock (_gate)
        {
            if (_retired || StreamCount > 0) return false;
            if (!IsDraining && (IdleFor < timeout || Volatile.Read(ref _keepOpen) > 0)) return false;
            _retired = true;
            return true;
        }
    }

    /// <summary>Marks the connection in use for a stream about to open; false when it was retired first.</summary>
    private bool TryBeginUse()
    {
        lock (_gate)
        {
            if (_retired) return false;
            Touch();
            return true;
        }
    }

    private TransportException Retired() => new($"the connection to {RemotePeer} was closed as idle; open the stream on another");

    /// <summary>Opens a stream and negotiates the first of <paramref name="protocols"/> the remote supports.</summary>
    /// <exception cref="MultistreamException">The remote supports none of them (the stream is reset).</exception>
    public async Task<(YamuxStream Stream, string Protocol)> OpenStreamAsync(IReadOnlyList<string> protocols, CancellationToken cancellationToken)
    {
        if (!TryBeginUse()) throw Retired();
        // SelectAsync writes its header and first proposal at once: the SYN travels in that write.
        var stream = await Session.OpenStreamAsync(synWithFirstWrite: true, cancellationToken);
        try
        {
            var protocol = await MultistreamSelect.SelectAsync(stream, protocols, cancellationToken);
            return (stream, protocol);
        }
        catch
        {
            stream.Reset();
            throw;
        }
    }

    /// <summary>
    /// Opens a stream with lazy negotiation of <paramref name="protocol"/>: the SYN, the proposal and
    /// <paramref name="firstData"/> go out in one connection write. The answer is read with
    /// <see cref="MultistreamSelect.ReadLazyAnswerAsync"/> before anything else.
    /// </summary>
    public Task<YamuxStream> OpenStreamLazyAsync(string protocol, ReadOnlyMemory<byte> firstData, CancellationToken cancellationToken) =>
        OpenStreamLazyAsync(protocol, firstData, quiet: false, cancellationToken)!;

    /// <summary>
    /// As <see cref="OpenStreamLazyAsync(string, ReadOnlyMemory{byte}, CancellationToken)"/>, but null rather than an
    /// exception when the connection is closed, closing or retired before the proposal is out: a
    /// connection closed at once (a dial-and-close) then costs its identify exchange no exception.
    /// </summary>
    internal Task<YamuxStream?> TryOpenStreamLazyAsync(string protocol, ReadOnlyMemory<byte> firstData, CancellationToken cancellationToken) =>
        OpenStreamLazyAsync(protocol, firstData, quiet: true, cancellationToken);

    /// <param name="quiet">Null for a closed connection; otherwise it throws and never returns null.</param>
    private async Task<YamuxStream?> OpenStreamLazyAsync(string protocol, ReadOnlyMemory<byte> firstData, bool quiet, CancellationToken cancellationToken)
    {
        var proposal = MultistreamSelect.GetLazyProposalLength(protocol);
        if (!TryBeginUse()) return quiet ? null : throw Retired();
        var stream = quiet
            ? await Session.TryOpenStreamAsync(synWithFirstWrite: true, cancellationToken)
            : await Session.OpenStreamAsync(synWithFirstWrite: true, cancellationToken);
        if (stream is null) return null;
        var buffer = ArrayPool<byte>.Shared.Rent(proposal + firstData.Length);
        try
        {
            MultistreamSelect.WriteLazyProposal(buffer, protocol);
            firstData.Span.CopyTo(buffer.AsSpan(proposal));
            var data = buffer.AsMemory(0, proposal + firstData.Length);
            if (!quiet)
            {
                await stream.WriteAsync(data, cancellationToken);
                return stream;
            }

            if (await stream.TryWriteAsync(data, cancellationToken)) return stream;
            stream.Reset();
            return null;
        }
        catch
        {
            stream.Reset();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Runs <paramref name="callback"/> once the connection has closed (<see cref="Completion"/> ended),
    /// after those registered before it; at once when it has already run its close callbacks.
    /// Disposing the registration before the close drops the callback (it may still run if the close
    /// is under way on another thread).
    /// </summary>
    internal CloseRegistration OnClosed(Action<PeerConnection, object?> callback, object? state)
    {
        lock (_gate)
        {
            if (!_closeRan)
            {
                if (_onClosed is null) _onClosed = new CloseCallback[4];
                else if (_onClosedCount == _onClosed.Length) Array.Resize(ref _onClosed, _onClosedCount * 2);
                _onClosed[_onClosedCount] = new CloseCallback(callback, state);
                return new CloseRegistration(this, _onClosedCount++);
            }
        }
        callback(this, state);
        return default;
    }

    internal void RemoveCloseCallback(int index)
    {
        lock (_gate)
        {
            if (!_closeRan && _onClosed is not null && index < _onClosedCount) _onClosed[index] = default;
        }
    }

    private void RunCloseCallbacks()
    {
        // A session the remote broke ends with its error on Completion; reading it keeps the finalizer
        // from reporting it as unobserved (a costly path, once per such connection).
        _ = Session.Completion.Exception;
        CloseCallback[]? callbacks;
        int count;
        lock (_gate)
        {
            _closeRan = true;
            callbacks = _onClosed;
            count = _onClosedCount;
            _onClosed = null;
        }
        for (var i = 0; i < count; i++)
        {
            try
            {
                callbacks![i].Callback?.Invoke(this, callbacks[i].State);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The host's callbacks log their own failures; one failing must not keep the others
                // (freeing the inbound slot, cancelling the handlers) from running.
            }
        }
    }

    private readonly record struct CloseCallback(Action<PeerConnection, object?>? Callback, object? State);

    public override string ToString() => $"{Direction} {RemotePeer} via {RemoteAddress}";

    public ValueTask DisposeAsync() => Session.DisposeAsync();
}
