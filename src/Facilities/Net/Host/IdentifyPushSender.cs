using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Net.Protocols.Identify;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// identify push (<c>/ipfs/id/push/1.0.0</c>), the sending side: when the host's listen addresses or protocols change
/// (a relay reservation's circuit address, a protocol handled after start), every connected peer that lists the push
/// protocol is sent the host's identify again, so it need not reconnect to learn it. One round runs at a time; changes
/// during a round make one more round, with what is current then.
/// </summary>
internal sealed class IdentifyPushSender(P2PHost host, Func<IdentifyInfo> ownInfo, HostOptions options, ILogger logger, CancellationToken stopping)
{
    /// <summary>Pushes in flight at once in a round: a node with thousands of connections opens that many streams, a few at a time.</summary>
    internal const int Concurrency = 16;

    private readonly object _gate = new();
    private bool _requested;
    private bool _running;
    private Task _rounds = Task.CompletedTask;

    /// <summary>Rounds sent so far (each to every peer that lists the protocol then).</summary>
    public int Rounds { get; private set; }

    /// <summary>Asks for a round soon: after the caller's current step, so that changes made together go in one.</summary>
    public void Request()
    {
        if (stopping.IsCancellationRequested) return;
        lock (_gate)
        {
            _requested = true;
            if (_running) return;
            _running = true;
            _rounds = RunAsync();
        }
    }

    /// <summary>Completes when the rounds in progress end; the host cancels them first when it stops.</summary>
    public Task WhenIdleAsync()
    {
        lock (_gate) return _rounds;
    }

    private async Task RunAsync()
    {
        // Off the caller's stack, as Task.Run would be, but on its context when it has one (a simulation).
        await Task.Yield();
        while (true)
        {
            lock (_gate)
            {
                if (!_requested || stopping.IsCancellationRequested)
                {
                    _running = false;
                    return;
                }

                _requested = false;
            }

            await PushToEveryoneAsync();
            Rounds++;
        }
    }

    private async Task PushToEveryoneAsync()
    {
        var targets = host.Connections
            .Where(c => !c.IsClosed && host.PeerStore.GetProtocols(c.RemotePeer).Contains(IdentifyProtocol.PushProtocolId, StringComparer.Ordinal))
            .ToArray();
        if (targets.Length == 0) return;
        var info = ownInfo();
        var next = -1;
        async Task PushNextAsync()
        {
            for (var i = Interlocked.Increment(ref next); i < targets.Length; i = Interlocked.Increment(ref next))
                await PushAsync(targets[i], info);
        }

        await Task.WhenAll(Enumerable.Range(0, Math.Min(Concurrency, targets.Length)).Select(_ => PushNextAsync()));
    }

    private async Task PushAsync(PeerConnection connection, IdentifyInfo info)
    {
        try
        {
            using var timeout = new CancellationTokenSource(options.IdentifyTimeout, options.TimeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, timeout.Token);
            var stream = await connection.TryOpenStreamLazyAsync(IdentifyProtocol.PushProtocolId, ReadOnlyMemory<byte>.Empty, linked.Token);
            if (stream is null) return;
            // Disposing closes our side gracefully (a FIN after the message), as the spec asks.
            await using (stream)
                await IdentifyProtocol.WriteAsync(stream, info, linked.Token);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            logger.LogDebug(e, "identify push to {Peer} failed", connection.RemotePeer);
        }
    }
}
