using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// The routers and firewalls of one <see cref="InMemoryNetwork"/> and the dials crossing them. A dial
/// that crosses none (both ends in the open, or in one segment) goes the network's plain way.
/// </summary>
/// <remarks>
/// <para>
/// A crossing dial takes its outbound mapping at once (its SYN leaves), waits the round trip, then
/// lands: on a node in the open, or on a router's public endpoint / a firewalled node, where a live
/// mapping whose filter admits the dial's source lets it through to the inside node. What is not let
/// through is dropped silently, like a SYN: the dial retransmits after 1, 2, 4 … seconds on the
/// network's clock and fails with a timeout at <see cref="InMemoryNetwork.UnansweredDialTimeout"/>.
/// </para>
/// <para>
/// TCP simultaneous open: a dial that lands on a node which is itself dialing back, from the endpoint
/// this dial targeted to the endpoint this dial came from (the mirrored four-tuple), completes both
/// dials with one connection and neither listener sees it. Both ends got it from
/// <see cref="ITransport.DialAsync"/>, as with real sockets; which of them plays the client of the
/// security handshake is for the protocol above (DCUtR) to say. A dial that lands where no such dial
/// waits goes to the node's listener (refused when it has none).
/// </para>
/// </remarks>
internal sealed class NatFabric(InMemoryNetwork network)
{
    private readonly Dictionary<string, NatTable> _tables = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NatTable> _byMember = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NatTable> _byPublicHost = new(StringComparer.Ordinal);
    private readonly List<InFlightDial> _inFlight = [];
    private int _routers;

    /// <summary>The port a node in the open dials from when its listening endpoint's four-tuple is taken.</summary>
    private const int EphemeralPort = 49152;

    private object Gate => network.Gate;

    private TimeProvider Time => network.TimeProvider;

    public NatRouter AddRouter(string name, NatBehavior behavior, IPAddress? publicAddress)
    {
        ArgumentNullException.ThrowIfNull(behavior);
        lock (Gate)
        {
            // The documentation range of RFC 5737, one address per router in the order they are made.
            publicAddress ??= new IPAddress([203, 0, 113, (byte)(1 + (_routers % 254))]);
            if (publicAddress.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork)
                throw new ArgumentException("a NAT router's public address must be IPv4", nameof(publicAddress));
            var host = publicAddress.ToString();
            if (_byPublicHost.ContainsKey(host)) throw new ArgumentException($"another NAT router already has the address {host}", nameof(publicAddress));
            var table = AddTable(name, behavior, host);
            _byPublicHost.Add(host, table);
            _routers++;
            return new NatRouter(this, table, publicAddress);
        }
    }

    public Firewall AddFirewall(string name, NatFilteringBehavior filtering, TimeSpan stateTimeout)
    {
        lock (Gate)
            return new Firewall(this, AddTable(name, new NatBehavior(NatMappingBehavior.EndpointIndependent, filtering) { MappingTimeout = stateTimeout }, null));
    }

    public void Attach(NatTable table, IEnumerable<string> nodes)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        lock (Gate)
        {
            foreach (var node in nodes)
            {
                ArgumentException.ThrowIfNullOrEmpty(node);
                if (_byMember.TryGetValue(node, out var current))
                {
                    if (ReferenceEquals(current, table)) continue;
                    throw new InvalidOperationException($"node '{node}' is already behind '{current.Name}'");
                }
                _byMember.Add(node, table);
                table.Members.Add(node);
            }
        }
    }

    public void Forward(NatTable table, int port, string node)
    {
        ArgumentException.ThrowIfNullOrEmpty(node);
        var now = Time.GetUtcNow();
        lock (Gate) table.Forward(port, node, now);
    }

    public IReadOnlyCollection<string> MembersOf(NatTable table)
    {
        lock (Gate) return [.. table.Members.Order(StringComparer.Ordinal)];
    }

    public int CountMappings(NatTable table)
    {
        var now = Time.GetUtcNow();
        lock (Gate) return table.CountLive(now);
    }

    public void Reboot(NatTable table)
    {
        var now = Time.GetUtcNow();
        lock (Gate)
        {
            table.Clear();
            FailDials(d => ReferenceEquals(d.SourceTable, table), $"NAT '{table.Name}' rebooted", now);
        }
        network.ResetConnectionsWhere(c => c.NatMappings?.Any(m => ReferenceEquals(m.Table, table)) == true, $"connection reset: NAT '{table.Name}' rebooted");
    }

    /// <summary>The node's dials still on their way fail, as its process died or stopped with them.</summary>
    public void AbandonDialsOf(string node, string reason)
    {
        var now = Time.GetUtcNow();
        lock (Gate) FailDials(d => d.From == node, reason, now);
    }

    /// <summary>Whether some router owns the public endpoint's address (a node's own address is the transport's business).</summary>
    public bool Owns(NatEndpoint endpoint)
    {
        lock (Gate) return !endpoint.IsNode && _byPublicHost.ContainsKey(endpoint.Host);
    }

    public async ValueTask<RawConnection> DialAsync(string from, NatEndpoint target, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var now = Time.GetUtcNow();
        InFlightDial? dial = null;
        var roundTrip = TimeSpan.Zero;
        lock (Gate)
        {
            _byMember.TryGetValue(from, out var fromTable);
            var crosses = true;
            if (target.IsNode)
            {
                _byMember.TryGetValue(target.Host, out var toTable);
                if (ReferenceEquals(toTable, fromTable)) crosses = false;
                else if (toTable is { Translates: true })
                    throw new TransportException($"dial {from} -> {target} failed: no route to host ({target} is a private address behind NAT '{toTable.Name}')");
            }
            else if (!_byPublicHost.ContainsKey(target.Host))
            {
                throw new TransportException($"dial {from} -> {target} failed: no route to host (no NAT router has the address {target.Host})");
            }
            if (crosses)
            {
                var mapping = fromTable?.MapOutbound(from, target, now);
                mapping?.Acquire(now);
                dial = new InFlightDial(from, fromTable, mapping, target, now + network.UnansweredDialTimeout);
                _inFlight.Add(dial);
                var landing = target.IsNode ? target.Host : _byPublicHost[target.Host].Find(target, now)?.Inside;
                if (landing is not null) roundTrip = network.RoundTripLocked(from, landing);
            }
        }
        if (dial is null) return await network.DialDirectAsync(from, target.Host, cancellationToken);

        using var registration = cancellationToken.Register(() => Cancel(dial, cancellationToken));
        if (roundTrip > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(roundTrip, Time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                Cancel(dial, cancellationToken);
                throw;
            }
        }
        now = Time.GetUtcNow();
        lock (Gate)
        {
            // A dial coming the other way may have completed this one while its SYN was on the way.
            if (!dial.Done) Land(dial, now);
        }
        return await dial.Completion.Task;
    }

    private NatTable AddTable(string name, NatBehavior behavior, string? publicHost)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (_tables.ContainsKey(name)) throw new ArgumentException($"a NAT router or firewall named '{name}' already exists", nameof(name));
        var table = new NatTable(name, behavior, publicHost, network.Seed);
        _tables.Add(name, table);
        return table;
    }

    /// <summary>The dial's SYN reaches its target's side now.</summary>
    private void Land(InFlightDial dial, DateTimeOffset now)
    {
        NatTable? table;
        if (dial.Target.IsNode) _byMember.TryGetValue(dial.Target.Host, out table);
        else table = _byPublicHost[dial.Target.Host];

        string inside;
        NatMapping? admitted = null;
        if (table is null)
        {
            inside = dial.Target.Host;
        }
        else
        {
            var hairpinRefused = ReferenceEquals(table, dial.SourceTable) && !table.Behavior.Hairpinning;
            admitted = hairpinRefused ? null : table.Find(dial.Target, now);
            var source = dial.Source;
            // A second connection between the same two endpoints is impossible in TCP: with port reuse
            // the dialer's kernel refuses the four-tuple and the dial leaves from an ephemeral port
            // instead (TcpTransport falls back so), which a port-dependent filter has never seen. An
            // AutoNAT server dialing back the requester's mapping of a connection they share tests
            // exactly that. A dialer behind a NAT of its own is no exception: its mapping is the
            // tuple's other half, and the ephemeral port leaves through another mapping (port).
            if (admitted is not null && network.IsConnectedThroughLocked(dial.From, admitted.Inside, admitted, dial.SourceMapping))
                source = source with { Port = EphemeralPort };
            if (admitted is null || !table.Admits(admitted, source))
            {
                Drop(dial, now);
                return;
            }
            inside = admitted.Inside;
        }

        if (network.IsPartitionedLocked(dial.From, inside))
        {
            Fail(dial, new TransportException($"dial {dial.From} -> {dial.Target} failed: the network is partitioned"), now);
            return;
        }

        var crossing = _inFlight.Find(p => !p.Done && p.From == inside && p.Target == dial.Source && p.Source == dial.Target);
        if (crossing is not null)
        {
            var both = network.OpenLocked(crossing.From, dial.From);
            both.NatMappings = Held(crossing.SourceMapping, dial.SourceMapping);
            WatchIdle(both);
            Complete(crossing, new RawConnection(both.DialerStream, Multiaddress.Memory(crossing.From), crossing.Target.ToAddress()));
            Complete(dial, new RawConnection(both.ListenerStream, Multiaddress.Memory(dial.From), dial.Target.ToAddress()));
            return;
        }

        if (!network.IsListeningLocked(inside))
        {
            Fail(dial, new TransportException($"dial {dial.From} -> {dial.Target} failed: connection refused (nothing listens on {Multiaddress.Memory(inside)})"), now);
            return;
        }
        var connection = network.OpenLocked(dial.From, inside);
        if (!network.OfferLocked(inside, new RawConnection(connection.ListenerStream, Multiaddress.Memory(inside), dial.Source.ToAddress()), connection))
        {
            connection.Abort("connection refused: listener closed", drain: false);
            Fail(dial, new TransportException($"dial {dial.From} -> {dial.Target} failed: connection refused (listener closed)"), now);
            return;
        }
        if (admitted is not null)
        {
            admitted.Acquire(now);
            // The inside node answers from this mapping, so the NAT has now seen it talk to the dialer.
            admitted.Contacted.Add(dial.Source);
        }
        connection.NatMappings = Held(dial.SourceMapping, admitted);
        WatchIdle(connection);
        Complete(dial, new RawConnection(connection.DialerStream, Multiaddress.Memory(dial.From), dial.Target.ToAddress()));
    }

    /// <summary>
    /// Resets the connection once it has been idle for the shortest <see cref="NatBehavior.EstablishedIdleTimeout"/>
    /// of the routers it crosses. One timer per such connection, moved on lazily: writes only note the time.
    /// </summary>
    private void WatchIdle(MemoryConnection connection)
    {
        NatTable? strictest = null;
        foreach (var mapping in connection.NatMappings ?? [])
            if (mapping.Table.Behavior.EstablishedIdleTimeout is { } t && (strictest is null || t < strictest.Behavior.EstablishedIdleTimeout))
                strictest = mapping.Table;
        if (strictest is null) return;
        var timeout = strictest.Behavior.EstablishedIdleTimeout!.Value;
        connection.TracksActivity = true;
        connection.NoteActivity();
        ITimer? timer = null;
        timer = Time.CreateTimer(_ =>
        {
            if (connection.IsFinished)
            {
                timer!.Dispose();
                return;
            }
            var idle = Time.GetElapsedTime(connection.LastActivity);
            if (idle < timeout)
            {
                timer!.Change(timeout - idle, Timeout.InfiniteTimeSpan);
                return;
            }
            timer!.Dispose();
            connection.Abort($"connection reset: NAT '{strictest.Name}' forgot the connection after {timeout} idle", drain: false);
        }, null, timeout, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The SYN was dropped: try again later, as TCP retransmits it (1 s, 2 s, 4 s …), until the deadline.</summary>
    private void Drop(InFlightDial dial, DateTimeOffset now)
    {
        if (now >= dial.Deadline)
        {
            GiveUp(dial, now);
            return;
        }
        var due = now + TimeSpan.FromSeconds(1 << Math.Min(dial.Retransmits++, 16));
        if (due > dial.Deadline) due = dial.Deadline;
        dial.Retransmit ??= Time.CreateTimer(_ => Retransmit(dial), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        dial.Retransmit.Change(due - now, Timeout.InfiniteTimeSpan);
    }

    private void GiveUp(InFlightDial dial, DateTimeOffset now) =>
        Fail(dial, new TransportException(
            $"dial {dial.From} -> {dial.Target} timed out after {network.UnansweredDialTimeout}: no answer (dropped by a NAT or firewall)"), now);

    private void Retransmit(InFlightDial dial)
    {
        var now = Time.GetUtcNow();
        lock (Gate)
        {
            if (dial.Done) return;
            if (now >= dial.Deadline) GiveUp(dial, now);
            else Land(dial, now);
        }
    }

    private void Cancel(InFlightDial dial, CancellationToken cancellationToken)
    {
        var now = Time.GetUtcNow();
        lock (Gate)
        {
            if (!Finish(dial)) return;
            dial.SourceMapping?.Release(now);
        }
        dial.Completion.TrySetCanceled(cancellationToken);
    }

    private void Complete(InFlightDial dial, RawConnection connection)
    {
        // The dial's hold on its mapping passes to the connection.
        if (Finish(dial)) dial.Completion.TrySetResult(connection);
    }

    private void Fail(InFlightDial dial, Exception error, DateTimeOffset now)
    {
        if (!Finish(dial)) return;
        dial.SourceMapping?.Release(now);
        dial.Completion.TrySetException(error);
    }

    private void FailDials(Predicate<InFlightDial> which, string reason, DateTimeOffset now)
    {
        foreach (var dial in _inFlight.FindAll(which))
            Fail(dial, new TransportException($"dial {dial.From} -> {dial.Target} failed: {reason}"), now);
    }

    private bool Finish(InFlightDial dial)
    {
        if (dial.Done) return false;
        dial.Done = true;
        _inFlight.Remove(dial);
        dial.Retransmit?.Dispose();
        return true;
    }

    private static NatMapping[] Held(NatMapping? a, NatMapping? b) =>
        (a, b) switch
        {
            (null, null) => [],
            (null, _) => [b],
            (_, null) => [a],
            _ => [a, b],
        };
}
