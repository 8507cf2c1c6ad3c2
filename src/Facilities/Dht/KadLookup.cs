using System.Threading.Channels;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// One iterative Kademlia lookup (spec "Peer routing"): keep candidates ordered by XOR distance to
/// the target, keep up to α requests in flight to the closest unqueried ones, add the closer peers
/// each reply names, and stop once the k closest candidates that did not fail have all answered,
/// when nothing is left to ask, when the caller's handler says it has what it wants, or at the
/// overall deadline (then it answers with what it has).
/// </summary>
/// <remarks>
/// The loop runs on one logical thread: requests run concurrently but report through a channel, so
/// candidate state needs no locks. Per-request failures (dial, timeout, garbage) are counted and the
/// lookup continues with other peers.
/// </remarks>
internal sealed class KadLookup
{
    private readonly KadId _target;
    private readonly PeerId _self;
    private readonly int _k;
    private readonly int _alpha;
    private readonly int _maxCandidates;
    private readonly int _maxAddresses;
    private readonly TimeProvider _timeProvider;
    private readonly TimeSpan _requestTimeout;
    private readonly TimeSpan _lookupTimeout;
    private readonly Func<PeerId, CancellationToken, Task<KadReply?>> _request;
    private readonly Func<PeerId, KadReply, int, bool> _onResponse;
    private readonly Action<PeerId, bool> _onOutcome;
    private readonly Action<DiscoveredPeer, AddressScope> _onPeerLearned;
    private readonly List<Candidate> _candidates = [];
    private readonly HashSet<PeerId> _seen = [];
    // Wire id -> each distinct set of address bytes it was learned with in this lookup (nearly always one).
    // All of them, not just the last: replies arrive in any order, and x1, x2, x1 must learn x1 once. A set is
    // packed in one array, each address behind its varint length.
    private readonly Dictionary<byte[], (byte[] First, List<byte[]>? More)> _learned = new(ByteKeyComparer.Instance);
    private readonly Dictionary<byte[], (byte[] First, List<byte[]>? More)>.AlternateLookup<ReadOnlySpan<byte>> _learnedById;
    private int _requests, _responses, _failures, _maxHop, _hopsToResult;

    /// <param name="request">Sends the request to a peer and returns its validated reply; null or a throw on failure.</param>
    /// <param name="onResponse">Sees every reply with its hop; returns true to end the lookup.</param>
    /// <param name="onOutcome">Told whether each queried peer answered, for the routing table.</param>
    /// <param name="onPeerLearned">Told of every peer a reply names, with its addresses and the replier's scope (<see cref="KadReply.ReplierScope"/>), before it is dialed.</param>
    /// <param name="alpha">Requests in flight at once; null for <see cref="KademliaDhtOptions.Alpha"/>.</param>
    public KadLookup(KadId target, PeerId self, KademliaDhtOptions options,
        Func<PeerId, CancellationToken, Task<KadReply?>> request,
        Func<PeerId, KadReply, int, bool> onResponse,
        Action<PeerId, bool> onOutcome,
        Action<DiscoveredPeer, AddressScope> onPeerLearned,
        int? alpha = null)
    {
        _target = target;
        _byDistance = new DistanceComparer(target);
        _self = self;
        _k = options.K;
        _alpha = alpha ?? options.Alpha;
        ArgumentOutOfRangeException.ThrowIfLessThan(_alpha, 1, nameof(alpha));
        _maxCandidates = options.K * 8;
        _maxAddresses = options.MaxAddressesPerPeer;
        _timeProvider = options.TimeProvider;
        _requestTimeout = options.QueryTimeout;
        _lookupTimeout = options.LookupTimeout;
        _request = request;
        _onResponse = onResponse;
        _onOutcome = onOutcome;
        _onPeerLearned = onPeerLearned;
        _learnedById = _learned.GetAlternateLookup<ReadOnlySpan<byte>>();
    }

    /// <summary>Records that the sought thing turned up at <paramref name="hop"/> (first call wins).</summary>
    public void MarkResult(int hop)
    {
        if (_hopsToResult == 0) _hopsToResult = hop;
    }

    public async Task<LookupResult> RunAsync(IEnumerable<PeerId> seeds, CancellationToken cancellationToken)
    {
        var started = _timeProvider.GetTimestamp();
        foreach (var seed in seeds) AddCandidate(seed, hop: 1);
        var completions = Channel.CreateUnbounded<Completion>(new UnboundedChannelOptions { SingleReader = true });
        using var deadline = new CancellationTokenSource(_lookupTimeout, _timeProvider);
        using var lookup = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        var inFlight = 0;
        var timedOut = false;
        var stop = false;
        try
        {
            while (!stop && !Converged())
            {
                for (var i = 0; i < _candidates.Count && inFlight < _alpha; i++)
                {
                    var c = _candidates[i];
                    if (c.State != CandidateState.Pending) continue;
                    c.State = CandidateState.InFlight;
                    inFlight++;
                    _requests++;
                    _ = QueryAsync(c, completions.Writer, lookup.Token);
                }
                if (inFlight == 0) break;
                Completion done;
                try
                {
                    done = await completions.Reader.ReadAsync(lookup.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    timedOut = true;
                    break;
                }
                inFlight--;
                stop = Process(done);
            }
        }
        finally
        {
            // Outstanding requests see the cancellation and report into a channel nobody reads: once it is
            // completed, they dispose their replies themselves, and those already in it are disposed here.
            lookup.Cancel();
            completions.Writer.TryComplete();
            while (completions.Reader.TryRead(out var left)) left.Reply?.Dispose();
        }
        cancellationToken.ThrowIfCancellationRequested();

        var closest = new List<PeerId>(_k);
        foreach (var c in _candidates)
        {
            if (closest.Count == _k) break;
            if (c.State == CandidateState.Succeeded) closest.Add(c.Peer);
        }
        var stats = new LookupStats(_maxHop, _hopsToResult, _requests, _responses, _failures, _seen.Count,
            _timeProvider.GetElapsedTime(started), timedOut);
        return new LookupResult(closest, stats);
    }

    private async Task QueryAsync(Candidate candidate, ChannelWriter<Completion> writer, CancellationToken lookupToken)
    {
        await Task.Yield();
        try
        {
            // The request's own source, on its timer, cancelled also when the lookup ends: the lookup's token
            // holds one registration for it, where a source linked to both would cost a second source and
            // a registration on each.
            using var timeout = new CancellationTokenSource(_requestTimeout, _timeProvider);
            using var lookupEnded = lookupToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), timeout);
            var reply = await _request(candidate.Peer, timeout.Token);
            if (!writer.TryWrite(new Completion(candidate, reply, null))) reply?.Dispose();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            writer.TryWrite(new Completion(candidate, null, e));
        }
    }

    private bool Process(Completion done)
    {
        try
        {
            return ProcessReply(done);
        }
        finally
        {
            // Nothing keeps a reply's closer peers past this: what was learned of them is copied.
            done.Reply?.Dispose();
        }
    }

    private bool ProcessReply(Completion done)
    {
        var c = done.Candidate;
        if (done.Reply is null)
        {
            c.State = CandidateState.Failed;
            _failures++;
            _onOutcome(c.Peer, false);
            return false;
        }
        c.State = CandidateState.Succeeded;
        _responses++;
        _maxHop = Math.Max(_maxHop, c.Hop);
        _onOutcome(c.Peer, true);
        // A reply naming more than k (or 2k) peers is padding; the closest ones are all we need.
        var reply = done.Reply;
        var count = Math.Min(reply.CloserPeerCount, _k * 2);
        for (var i = 0; i < count; i++)
        {
            var wire = reply.CloserPeer(i);
            // Replies overlap heavily (most of a lookup's replies name mostly the same peers): a peer named
            // again with the very same address bytes is already a candidate and already in the peer store,
            // so it is not parsed (PeerId, multiaddrs) or stored again.
            if (AlreadyLearned(wire)) continue;
            var peer = KadMessageCodec.ToPeer(wire, _maxAddresses);
            if (peer is null || peer.PeerId == _self) continue;
            _onPeerLearned(peer, reply.ReplierScope);
            NoteLearned(wire);
            AddCandidate(peer.PeerId, c.Hop + 1);
        }
        return _onResponse(c.Peer, reply, c.Hop);
    }

    private bool AlreadyLearned(in KadWirePeer wire)
    {
        if (!_learnedById.TryGetValue(wire.Id, out var sets)) return false;
        if (SameAddresses(sets.First, wire)) return true;
        if (sets.More is null) return false;
        foreach (var set in sets.More)
            if (SameAddresses(set, wire)) return true;
        return false;
    }

    private static bool SameAddresses(byte[] set, in KadWirePeer wire)
    {
        var at = 0;
        for (var i = 0; i < wire.AddressCount; i++)
        {
            if (at == set.Length) return false;
            var length = (int)Varint.Read(set.AsSpan(at), out var prefix);
            at += prefix;
            if (!wire.Address(i).SequenceEqual(set.AsSpan(at, length))) return false;
            at += length;
        }
        return at == set.Length;
    }

    private void NoteLearned(in KadWirePeer wire)
    {
        var size = 0;
        for (var i = 0; i < wire.AddressCount; i++) size += Varint.GetLength((ulong)wire.Address(i).Length) + wire.Address(i).Length;
        var set = size == 0 ? [] : new byte[size];
        var at = 0;
        for (var i = 0; i < wire.AddressCount; i++)
        {
            var address = wire.Address(i);
            at += Varint.Write(set.AsSpan(at), (ulong)address.Length);
            address.CopyTo(set.AsSpan(at));
            at += address.Length;
        }
        ref var sets = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_learnedById, wire.Id, out var exists);
        if (!exists) sets.First = set;
        else (sets.More ??= []).Add(set);
    }

    private void AddCandidate(PeerId peer, int hop)
    {
        if (peer == _self || !_seen.Add(peer)) return;
        var candidate = new Candidate(peer, KadId.FromPeer(peer), hop);
        var index = _candidates.BinarySearch(candidate, _byDistance);
        _candidates.Insert(index < 0 ? ~index : index, candidate);
        // Far candidates nobody has asked yet are the cheapest to forget; _seen still stops re-adding them.
        if (_candidates.Count > _maxCandidates)
        {
            for (var i = _candidates.Count - 1; i >= _k && _candidates.Count > _maxCandidates; i--)
            {
                if (_candidates[i].State == CandidateState.Pending) _candidates.RemoveAt(i);
            }
        }
    }

    /// <summary>True once the k closest candidates that did not fail have all answered.</summary>
    private bool Converged()
    {
        var answered = 0;
        foreach (var c in _candidates)
        {
            switch (c.State)
            {
                case CandidateState.Failed:
                    continue;
                case CandidateState.Succeeded:
                    if (++answered == _k) return true;
                    continue;
                default:
                    return false;
            }
        }
        // Fewer than k reachable peers exist: done once none is pending or in flight (checked by the caller).
        return false;
    }

    private enum CandidateState
    {
        Pending,
        InFlight,
        Succeeded,
        Failed,
    }

    private sealed class Candidate(PeerId peer, KadId id, int hop)
    {
        public PeerId Peer { get; } = peer;
        public KadId Id { get; } = id;
        public int Hop { get; } = hop;
        public CandidateState State { get; set; }
    }

    private readonly record struct Completion(Candidate Candidate, KadReply? Reply, Exception? Error);

    // Declared after the methods: the compiler numbers the state machines of members declared after a new one anew, and
    // the simulation's trace hash names them.
    private readonly DistanceComparer _byDistance;

    private sealed class DistanceComparer(KadId target) : IComparer<Candidate>
    {
        public int Compare(Candidate? x, Candidate? y) => target.CompareDistance(x!.Id, y!.Id);
    }
}
