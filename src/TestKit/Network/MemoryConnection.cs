using P2PInference.TestKit.Network.Nat;

namespace P2PInference.TestKit.Network;

/// <summary>
/// A connection on the in-memory network: two <see cref="MemoryFlow"/>s and the two stream ends.
/// It counts as open on the network until both ends are closed or it is aborted.
/// </summary>
internal sealed class MemoryConnection
{
    private readonly InMemoryNetwork _network;
    private int _dialerClosed;
    private int _listenerClosed;
    private int _finished;
    private long _lastActivity;

    public MemoryConnection(InMemoryNetwork network, string dialer, string listener, InMemoryLink toListener, InMemoryLink toDialer, long capacity, int seed)
    {
        _network = network;
        Dialer = dialer;
        Listener = listener;
        var time = network.TimeProvider;
        ToListener = new MemoryFlow(this, toListener, time, capacity, seed);
        ToDialer = new MemoryFlow(this, toDialer, time, capacity, unchecked(seed * -1640531535) ^ 0x5bd1e995);
        DialerStream = new InMemoryConnectionStream(this, dialerSide: true);
        ListenerStream = new InMemoryConnectionStream(this, dialerSide: false);
    }

    public string Dialer { get; }
    public string Listener { get; }
    public MemoryFlow ToListener { get; }
    public MemoryFlow ToDialer { get; }
    public InMemoryConnectionStream DialerStream { get; }
    public InMemoryConnectionStream ListenerStream { get; }
    public bool IsFinished => Volatile.Read(ref _finished) != 0;

    /// <summary>The NAT mappings this connection keeps alive; released when it finishes. Guarded by the network's lock.</summary>
    public NatMapping[]? NatMappings { get; set; }

    /// <summary>Whether writes record <see cref="LastActivity"/> (only for connections a NAT may forget when idle).</summary>
    public bool TracksActivity { get; set; }

    /// <summary>The network clock's timestamp of the last write on either end, when <see cref="TracksActivity"/>.</summary>
    public long LastActivity => Interlocked.Read(ref _lastActivity);

    public void NoteActivity()
    {
        if (TracksActivity) Interlocked.Exchange(ref _lastActivity, _network.TimeProvider.GetTimestamp());
    }

    public bool Involves(string node) => Dialer == node || Listener == node;

    public bool Between(string a, string b) => (Dialer == a && Listener == b) || (Dialer == b && Listener == a);

    public void Attach()
    {
        ToListener.Link.Attach(ToListener);
        ToDialer.Link.Attach(ToDialer);
    }

    /// <summary>One end closed cleanly: its peer reads end of stream after what was sent; what it still sends is dropped.</summary>
    public void CloseEnd(bool dialerSide)
    {
        if (Interlocked.Exchange(ref dialerSide ? ref _dialerClosed : ref _listenerClosed, 1) != 0) return;
        var (outgoing, incoming) = dialerSide ? (ToListener, ToDialer) : (ToDialer, ToListener);
        outgoing.CompleteWriter();
        incoming.CloseReader();
        if (Volatile.Read(ref _dialerClosed) != 0 && Volatile.Read(ref _listenerClosed) != 0) Finish();
    }

    /// <summary>Both directions fail with "connection reset"; see <see cref="MemoryFlow.Abort"/> for <paramref name="drain"/>.</summary>
    public void Abort(string reason, bool drain)
    {
        ToListener.Abort(new IOException(reason), drain);
        ToDialer.Abort(new IOException(reason), drain);
        Finish();
    }

    private void Finish()
    {
        if (Interlocked.Exchange(ref _finished, 1) != 0) return;
        ToListener.Link.Detach(ToListener);
        ToDialer.Link.Detach(ToDialer);
        ToListener.Shutdown();
        ToDialer.Shutdown();
        _network.Unregister(this);
    }
}
