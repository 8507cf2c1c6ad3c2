using System.Threading.Channels;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.TestKit.Network;

/// <summary>A node's listener on the in-memory network; dials to the node queue here until accepted.</summary>
internal sealed class InMemoryListener : ITransportListener
{
    private readonly InMemoryNetwork _network;
    private readonly Channel<(RawConnection Raw, MemoryConnection Connection)> _backlog =
        Channel.CreateUnbounded<(RawConnection, MemoryConnection)>(new UnboundedChannelOptions { SingleWriter = false, SingleReader = false });

    public InMemoryListener(InMemoryNetwork network, string nodeName)
    {
        _network = network;
        NodeName = nodeName;
        Address = Multiaddress.Memory(nodeName);
    }

    public string NodeName { get; }

    public Multiaddress Address { get; }

    public async ValueTask<RawConnection> AcceptAsync(CancellationToken cancellationToken)
    {
        try
        {
            // A connection reset while it waited in the backlog is still handed out, as a kernel would;
            // its first read tells the caller.
            var (raw, _) = await _backlog.Reader.ReadAsync(cancellationToken);
            return raw;
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(InMemoryListener), $"the listener on {Address} was closed");
        }
    }

    /// <summary>Queues an inbound connection; false when the listener has closed.</summary>
    internal bool Offer(RawConnection raw, MemoryConnection connection) => _backlog.Writer.TryWrite((raw, connection));

    /// <summary>Stops accepting; connections never accepted are reset (the dialer sees its reads fail).</summary>
    internal void Close()
    {
        if (!_backlog.Writer.TryComplete()) return;
        while (_backlog.Reader.TryRead(out var pending))
            pending.Connection.Abort("connection reset: listener closed before accepting", drain: false);
    }

    public ValueTask DisposeAsync()
    {
        _network.RemoveListener(this);
        return ValueTask.CompletedTask;
    }
}
