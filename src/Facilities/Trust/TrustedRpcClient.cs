using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// An <see cref="IRpcClient"/> that calls a method only on peers that proved the role the method
/// belongs to (<see cref="RoleOf"/>): before the first byte of a request goes to a peer it has its
/// grant (<see cref="GrantExchange.Method"/>, remembered for <see cref="CachePeriod"/>) checked by
/// the <see cref="GrantVerifier"/>. Topic calls skip providers that fail the check (logged at debug);
/// a call to one peer that fails it is <see cref="RpcStatusCode.Unavailable"/> with the reason, marked
/// <see cref="RpcException.NotDelivered"/> since the peer was sent nothing of it (so a caller may try another). The
/// node's own grant, when it has one, goes with every request so callees can check the caller too, and so does the
/// issue time of the signed revocation list it holds. A peer whose grant it fetches and finds valid is asked for a
/// newer signed list first (<see cref="RevocationExchange"/>), and the grant is checked against what came.
/// </summary>
/// <remarks>
/// Expiry and revocation are checked on every call against the remembered grant, so they take
/// effect at once; the cache period bounds how long a grant a peer replaced (or lost) is still
/// believed. A failed fetch is remembered (<see cref="FailedGrantQueries"/>) and the peer fails the check
/// at once meanwhile: when it was unreachable or silent past the query's timeout, for an eighth of the cache
/// period, doubling with each failure in a row up to the period (a peer that was down is asked again soon
/// after it returns); when it answered with an error, for the period. So a peer that announces a topic and
/// never answers costs a caller at most five waits in its first two periods and one a period after that, not one per call.
/// A grant query may take at most half of what is left of the call's deadline (and <see cref="ExchangeTimeout"/>),
/// in a topic call and a call to one peer alike, so a silent peer leaves the caller time for another. The query and
/// the call share the one deadline: a call to one peer ends by its timeout however long the query took, and one whose
/// deadline passed before the peer could be checked fails <see cref="RpcStatusCode.DeadlineExceeded"/>, not delivered.
/// </remarks>
public sealed class TrustedRpcClient : IRpcClient
{
    /// <summary>How long a peer may take to present its grant.</summary>
    public static readonly TimeSpan ExchangeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Peers whose grants are remembered at most; past it the memory starts afresh (it is only a cache).</summary>
    internal const int MaxRemembered = 4096;

    /// <summary>
    /// A grant query given less time than this (the call it serves was nearly out of time) that times out
    /// is not held against the peer: too short to tell a silent peer from a far one.
    /// </summary>
    internal static readonly TimeSpan ShortestJudgedQuery = TimeSpan.FromSeconds(1);

    /// <summary>How long a callee waits for a caller to hand on the newer list it claims (<see cref="CatchUpRevocationsAsync"/>).</summary>
    internal static readonly TimeSpan CatchUpTimeout = TimeSpan.FromSeconds(2);

    private readonly IRpcClient _inner;
    private readonly GrantVerifier _verifier;
    private readonly Func<string, GrantRole?> _roleOf;
    private readonly HeldGrant? _ownGrant;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<PeerId, Presented> _presented = new();
    private readonly ConcurrentDictionary<PeerId, long> _claimsAsked = new();
    private readonly FailedGrantQueries _failed;
    private volatile OwnMetadataCache? _ownMetadata;

    /// <param name="inner">The node that carries the calls.</param>
    /// <param name="verifier">The cluster and clock the grants are checked against.</param>
    /// <param name="roleOf">The role a callee of a method must hold; null for methods anyone may serve.</param>
    /// <param name="ownGrant">This node's grant, sent with every request; null for nodes without a role (clients).</param>
    public TrustedRpcClient(IRpcClient inner, GrantVerifier verifier, Func<string, GrantRole?> roleOf, HeldGrant? ownGrant,
        TimeSpan? cachePeriod = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(verifier);
        ArgumentNullException.ThrowIfNull(roleOf);
        _inner = inner;
        _verifier = verifier;
        _roleOf = roleOf;
        _ownGrant = ownGrant;
        CachePeriod = cachePeriod ?? TimeSpan.FromSeconds(30);
        if (CachePeriod < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(cachePeriod));
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<TrustedRpcClient>();
        _failed = new FailedGrantQueries(verifier.Time, CachePeriod, MaxRemembered);
    }

    public GrantVerifier Verifier => _verifier;

    /// <summary>The grant sent with every request now; null for nodes without a role.</summary>
    public RoleGrant? OwnGrant => _ownGrant?.Current;

    /// <summary>How long a grant a peer presented is remembered before it is asked again.</summary>
    public TimeSpan CachePeriod { get; }

    /// <summary>Failed grant queries remembered now (bounded by <see cref="MaxRemembered"/>).</summary>
    internal int FailedQueriesRemembered => _failed.Count;

    /// <summary>
    /// Null when <paramref name="peer"/> holds a valid grant for <paramref name="role"/>; else why not, as an Unavailable error naming
    /// the role, marked <see cref="RpcException.NotDelivered"/>: nothing of the call it guards has been sent to the peer.
    /// </summary>
    public ValueTask<RpcException?> CheckCalleeAsync(PeerId peer, GrantRole role, CancellationToken cancellationToken) =>
        CheckCalleeAsync(peer, role, ExchangeTimeout, cancellationToken);

    private async ValueTask<RpcException?> CheckCalleeAsync(PeerId peer, GrantRole role, TimeSpan queryTimeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        Presented presented;
        try
        {
            presented = await PresentedGrantAsync(peer, queryTimeout, askAgain: false, cancellationToken);
        }
        catch (RpcException e)
        {
            return RpcException.Undelivered(RpcStatusCode.Unavailable, $"{role.Name()} {peer} did not present its grant: {e.Message}", e);
        }
        var reason = presented.Malformed ?? _verifier.Check(presented.Grant, peer, role);
        return reason is null
            ? null
            : RpcException.Undelivered(RpcStatusCode.Unavailable, $"peer {peer} holds no valid {role.Name()} grant of cluster {_verifier.Cluster}: {reason}");
    }

    /// <summary>Whether <paramref name="peer"/> presents a valid grant of this cluster, for whichever role it names.</summary>
    /// <exception cref="RpcException">The peer could not be asked.</exception>
    public async ValueTask<bool> HoldsGrantAsync(PeerId peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        // The peer has just connected: a query that failed earlier says little now, so it is asked again.
        var presented = await PresentedGrantAsync(peer, ExchangeTimeout, askAgain: true, cancellationToken);
        return presented.Grant is { } grant && _verifier.Check(grant, peer, grant.Role) is null;
    }

    /// <param name="askAgain">Query the peer even when its last failed query is still held against it.</param>
    /// <exception cref="RpcException">The query failed now, or (unless <paramref name="askAgain"/>) did recently enough to be held against the peer.</exception>
    private async ValueTask<Presented> PresentedGrantAsync(PeerId peer, TimeSpan queryTimeout, bool askAgain, CancellationToken cancellationToken)
    {
        var time = _verifier.Time;
        if (_presented.TryGetValue(peer, out var presented) && time.GetElapsedTime(presented.FetchedAt) < CachePeriod) return presented;
        if (!askAgain && _failed.TryGet(peer, out var reason, out var age, out var held))
            throw new RpcException(RpcStatusCode.Unavailable,
                $"its grant query failed {age.TotalSeconds:0.###} s ago, and it is not asked again for {(held - age).TotalSeconds:0.###} s: {reason}");
        byte[] bytes;
        try
        {
            bytes = await _inner.RequestAsync(peer, GrantExchange.Method, ReadOnlyMemory<byte>.Empty,
                new RpcCallOptions { Timeout = queryTimeout, Idempotent = true }, cancellationToken);
        }
        catch (RpcException e) when (e.Code == RpcStatusCode.UnknownMethod)
        {
            bytes = [];
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested && e.Code != RpcStatusCode.Cancelled
                                     && (e.Code != RpcStatusCode.DeadlineExceeded || queryTimeout >= ShortestJudgedQuery))
        {
            // Unreachable, or silent for as long as it was given: held against it so that later calls skip it at once,
            // for a back-off growing with each failure in a row (it may have been down, and be back soon); an error it
            // answered with, for the cache period. A query we cancelled, or one given too little time to judge, is not.
            _failed.Remember(peer, e.Message, backOff: e.Code is RpcStatusCode.Unavailable or RpcStatusCode.DeadlineExceeded);
            throw;
        }
        _failed.Forget(peer);
        RoleGrant? grant = null;
        string? malformed = null;
        if (bytes.Length > 0)
        {
            try
            {
                grant = RoleGrant.Decode(bytes);
            }
            catch (FormatException e)
            {
                malformed = $"its grant is malformed: {e.Message}";
            }
        }
        // A peer that proves a grant of this cluster may hold a newer revocation list, perhaps one revoking it: it is
        // asked before the grant is used. Peers without a valid grant are not asked anything more.
        if (grant is not null && _verifier.Check(grant, peer, grant.Role) is null) await AdoptRevocationsFromAsync(peer, queryTimeout / 2, cancellationToken);
        presented = new Presented(grant, malformed, time.GetTimestamp());
        if (_presented.Count >= MaxRemembered) _presented.Clear();
        _presented[peer] = presented;
        return presented;
    }

    /// <summary>
    /// Asks <paramref name="peer"/> for a signed revocation list newer than the one held (<see cref="RevocationExchange"/>)
    /// and takes one the cluster key signed. Best effort: a peer that does not answer, or answers with anything else, is
    /// not held to account for it, since its grant is what is being checked.
    /// </summary>
    private async Task AdoptRevocationsFromAsync(PeerId peer, TimeSpan timeout, CancellationToken cancellationToken)
    {
        byte[] answer;
        try
        {
            answer = await _inner.RequestAsync(peer, RevocationExchange.Method, RevocationExchange.Request(_verifier.SignedRevocations),
                new RpcCallOptions { Timeout = timeout, Idempotent = true }, cancellationToken);
        }
        catch (RpcException e)
        {
            _logger.LogDebug("{Peer} gave no revocation list: {Message}", peer, e.Message);
            return;
        }
        if (answer.Length == 0) return;
        SignedRevocationList list;
        try
        {
            list = SignedRevocationList.Decode(answer);
        }
        catch (FormatException e)
        {
            _logger.LogWarning("{Peer} sent a malformed revocation list: {Message}", peer, e.Message);
            return;
        }
        switch (_verifier.Adopt(list, out var reason))
        {
            case RevocationListAdoption.Taken:
                _logger.LogInformation("took the {List} from {Peer}", list, peer);
                break;
            case RevocationListAdoption.NotNewer:
                _logger.LogDebug("not taking the revocation list {Peer} sent: {Reason}", peer, reason); // another peer's came first
                break;
            default:
                _logger.LogWarning("not taking the revocation list {Peer} sent: {Reason}", peer, reason);
                break;
        }
    }

    /// <summary>
    /// Asks <paramref name="peer"/>, a caller whose grant was checked, for its signed revocation list when it claims one
    /// issued at <paramref name="claimedIssued"/> (unix milliseconds), later than the one held. Each peer is asked once
    /// per claim, so one that claims a list it does not hand on costs one query, not one per request.
    /// </summary>
    public Task CatchUpRevocationsAsync(PeerId peer, long claimedIssued, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (_verifier.SignedRevocations is { } held && held.Issued.ToUnixTimeMilliseconds() >= claimedIssued) return Task.CompletedTask;
        if (_claimsAsked.TryGetValue(peer, out var asked) && asked >= claimedIssued) return Task.CompletedTask;
        if (_claimsAsked.Count >= MaxRemembered) _claimsAsked.Clear();
        _claimsAsked[peer] = claimedIssued;
        return AdoptRevocationsFromAsync(peer, CatchUpTimeout, cancellationToken);
    }

    public async Task<byte[]> RequestAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken)
    {
        options = await ThrowUnlessTrustedAsync(peer, method, options, cancellationToken);
        return await _inner.RequestAsync(peer, method, request, WithGrant(options), cancellationToken);
    }

    public async IAsyncEnumerable<byte[]> RequestStreamAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        options = await ThrowUnlessTrustedAsync(peer, method, options, cancellationToken);
        await foreach (var item in _inner.RequestStreamAsync(peer, method, request, WithGrant(options), cancellationToken))
            yield return item;
    }

    public Task<byte[]> RequestTopicAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken) =>
        _inner.RequestTopicAsync(topic, method, request, Checked(method, WithGrant(options)), cancellationToken);

    public IAsyncEnumerable<byte[]> RequestTopicStreamAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
        CancellationToken cancellationToken) =>
        _inner.RequestTopicStreamAsync(topic, method, request, Checked(method, WithGrant(options)), cancellationToken);

    public Task<IReadOnlyList<RpcPeerResult>> RequestAllAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
        CancellationToken cancellationToken) =>
        _inner.RequestAllAsync(topic, method, request, Checked(method, WithGrant(options)), cancellationToken);

    /// <summary>
    /// Checks <paramref name="peer"/>'s grant when <paramref name="method"/> needs one, and returns the options the call is then
    /// made with: its timeout turned into one deadline, so the grant query and the call share it rather than the call's
    /// timeout starting afresh after the query.
    /// </summary>
    /// <exception cref="RpcException">The peer failed the check (<see cref="RpcStatusCode.Unavailable"/>), or the deadline passed
    /// before it could be checked (<see cref="RpcStatusCode.DeadlineExceeded"/>); both marked <see cref="RpcException.NotDelivered"/>.</exception>
    private async ValueTask<RpcCallOptions?> ThrowUnlessTrustedAsync(PeerId peer, string method, RpcCallOptions? options, CancellationToken cancellationToken)
    {
        if (_roleOf(method) is not { } role) return options;
        var deadline = options?.ResolveDeadline(_verifier.Time, defaultTimeout: null);
        var queryTimeout = QueryTimeout(deadline);
        if (deadline is not null && queryTimeout <= TimeSpan.Zero)
            throw RpcException.Undelivered(RpcStatusCode.DeadlineExceeded,
                $"the deadline passed before the grant of {role.Name()} {peer} could be checked; {method} was not sent");
        if (await CheckCalleeAsync(peer, role, queryTimeout, cancellationToken) is { } refused)
        {
            _logger.LogDebug("not calling {Method} on {Peer}: {Reason}", method, peer, refused.Message);
            throw refused;
        }
        return options is null ? null : options with { Deadline = deadline, Timeout = null };
    }

    private RpcCallOptions Checked(string method, RpcCallOptions options)
    {
        if (_roleOf(method) is not { } role) return options;
        var inner = options.CalleeCheck;
        var deadline = options.ResolveDeadline(_verifier.Time, defaultTimeout: null);
        return options with
        {
            CalleeCheck = async (peer, ct) =>
                await CheckCalleeAsync(peer, role, QueryTimeout(deadline), ct) ?? (inner is null ? null : await inner(peer, ct)),
        };
    }

    /// <summary>
    /// What a grant query made for a call may take: <see cref="ExchangeTimeout"/>, and at most half of what is
    /// left of the call's <paramref name="deadline"/>, so that a peer that never answers leaves a topic call time
    /// to check and call another provider (the router cuts the query off at the deadline in any case), and a
    /// call to one peer fails within its own timeout, leaving its caller time to try another.
    /// </summary>
    private TimeSpan QueryTimeout(DateTimeOffset? deadline)
    {
        if (deadline is not { } d) return ExchangeTimeout;
        var half = (d - _verifier.Time.GetUtcNow()) / 2;
        return half >= ExchangeTimeout ? ExchangeTimeout : half > TimeSpan.Zero ? half : TimeSpan.Zero;
    }

    private RpcCallOptions WithGrant(RpcCallOptions? options)
    {
        options ??= RpcCallOptions.Default;
        if (_ownGrant is null) return options;
        var own = OwnMetadata(_ownGrant.Metadata);
        if (options.Metadata is not { Count: > 0 } metadata) return options with { Metadata = own };
        var merged = new Dictionary<string, string>(metadata, StringComparer.Ordinal);
        foreach (var (key, value) in own) merged[key] = value;
        return options with { Metadata = merged };
    }

    /// <summary>The grant's metadata and, while a signed revocation list is held, its issue time (<see cref="RevocationExchange.MetadataKey"/>); made once per grant and list.</summary>
    private IReadOnlyDictionary<string, string> OwnMetadata(IReadOnlyDictionary<string, string> grant)
    {
        var list = _verifier.SignedRevocations;
        if (list is null) return grant;
        if (_ownMetadata is { } cached && cached.List == list && cached.Grant == grant) return cached.Merged;
        var merged = new Dictionary<string, string>(grant, StringComparer.Ordinal)
        {
            [RevocationExchange.MetadataKey] = list.Issued.ToUnixTimeMilliseconds().ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        _ownMetadata = new OwnMetadataCache(list, grant, merged);
        return merged;
    }

    private sealed record Presented(RoleGrant? Grant, string? Malformed, long FetchedAt);

    /// <summary>One object, swapped whole: a request reads the list, grant and metadata of one moment.</summary>
    private sealed record OwnMetadataCache(SignedRevocationList List, IReadOnlyDictionary<string, string> Grant, IReadOnlyDictionary<string, string> Merged);
}
