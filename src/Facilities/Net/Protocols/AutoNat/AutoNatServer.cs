using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// Serves AutoNAT v1 on a host: a peer asks to be dialled back, the server tries the addresses it
/// may dial (<see cref="DialBackAddressPolicy"/>) on new connections of their own, under a key of
/// their own (<see cref="P2PHost.ProbeDialAsync"/>), and answers OK with the address reached, or
/// E_DIAL_ERROR. Requests past the limits of <see cref="AutoNatServerOptions"/> are answered
/// E_DIAL_REFUSED; malformed ones E_BAD_REQUEST, or a reset when not even the message could be read.
/// </summary>
/// <remarks>
/// Each request runs inside the host's stream handler, so the host owns it: it is cancelled when
/// the connection closes or the host stops, and awaited before the host finishes stopping.
/// </remarks>
public sealed class AutoNatServer : IDisposable
{
    private const int MaxStatusTextLength = 1024;

    private readonly P2PHost _host;
    private readonly AutoNatServerOptions _options;
    private readonly ILogger _logger;
    private readonly DialBackRateLimiter _rate;
    private readonly KeyPair _dialBackIdentity;
    private int _inFlight;
    private long _served;
    private int _disposed;

    /// <summary>Registers the protocol handler on <paramref name="host"/>; <see cref="Dispose"/> removes it.</summary>
    public AutoNatServer(P2PHost host, AutoNatServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new AutoNatServerOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxDialBacksPerPeer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxDialBacksPerAddress);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxDialBacks);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxConcurrentDialBacks);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxAddressesPerRequest);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxMessageLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.MaxMessageLength, AutoNatMessageCodec.MaxMessageLength);
        _host = host;
        _options = options;
        _logger = options.LoggerFactory.CreateLogger<AutoNatServer>();
        _rate = new DialBackRateLimiter(options.MaxDialBacksPerPeer, options.MaxDialBacksPerAddress, options.MaxDialBacks, options.RateWindow, host.TimeProvider);
        // As go-libp2p's server: dial-backs under a key of their own, so the requester does not see a
        // second connection from us and retire one of the two (the spec allows another peer id).
        _dialBackIdentity = KeyPair.Generate(host.RandomSource);
        host.Handle(AutoNatMessageCodec.ProtocolId, HandleAsync);
    }

    /// <summary>Requests answered (with any status), for logs and tests.</summary>
    public long RequestsAnswered => Interlocked.Read(ref _served);

    /// <summary>Raised after each answer is written: who asked, and what they were told.</summary>
    public event Action<PeerId, AutoNatDialResponse>? Answered;

    private async Task HandleAsync(StreamContext context, CancellationToken cancellationToken)
    {
        var stream = context.Stream;
        var (request, malformed) = await ReadRequestAsync(stream, cancellationToken);
        var response = malformed ?? await AnswerAsync(context, request!, cancellationToken);

        using var writeTimeout = new CancellationTokenSource(_options.RequestTimeout, _host.TimeProvider);
        using var write = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, writeTimeout.Token);
        await AutoNatMessageCodec.WriteResponseAsync(stream, response, write.Token);
        await stream.CompleteWritesAsync(write.Token);
        Interlocked.Increment(ref _served);
        _logger.LogDebug("AutoNAT request from {Peer} via {Address}: {Status} {Text}", context.RemotePeer, context.Connection.RemoteAddress, response.Status, response.StatusText);
        EventSubscribers.Raise(Answered, context.RemotePeer, response, _logger, $"{nameof(AutoNatServer)}.{nameof(Answered)}");
    }

    /// <summary>The request, or the E_BAD_REQUEST answer for one that was read whole but made no sense.</summary>
    /// <remarks>A request too large, cut short or too slow is not answered: the handler throws and the host resets the stream.</remarks>
    private async Task<(AutoNatDialRequest? Request, AutoNatDialResponse? Malformed)> ReadRequestAsync(Stream stream, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _host.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            return (await AutoNatMessageCodec.ReadRequestAsync(stream, _options.MaxMessageLength, linked.Token), null);
        }
        catch (Exception e) when (e is AutoNatException or MalformedMessageException)
        {
            return (null, AutoNatDialResponse.BadRequest(e.Message));
        }
    }

    private async Task<AutoNatDialResponse> AnswerAsync(StreamContext context, AutoNatDialRequest request, CancellationToken cancellationToken)
    {
        var observed = context.Connection.RemoteAddress;
        if (DialBackAddressPolicy.IsRelayed(observed))
            return AutoNatDialResponse.Refused("requests over a relayed connection are not served: its address says nothing about the requester");
        if (request.Peer != context.RemotePeer)
            return AutoNatDialResponse.BadRequest("the request names another peer than the one that sent it");

        var targets = new List<Multiaddress>(_options.MaxAddressesPerRequest);
        string? lastReason = null;
        foreach (var candidate in request.Addresses)
        {
            var target = DialBackAddressPolicy.Check(candidate, observed, context.RemotePeer, _options.AllowPrivateAddresses, out var reason);
            if (target is not null && !_host.CanDial(target)) (target, reason) = (null, "no transport for it");
            if (target is null)
            {
                lastReason = $"{candidate}: {reason}";
                continue;
            }
            if (!targets.Contains(target)) targets.Add(target);
            if (targets.Count == _options.MaxAddressesPerRequest) break;
        }
        if (targets.Count == 0)
            return AutoNatDialResponse.Refused(request.Addresses.Count == 0 ? "no address to dial" : $"no address we may dial (last: {lastReason})");

        if (Interlocked.Increment(ref _inFlight) > _options.MaxConcurrentDialBacks)
        {
            Interlocked.Decrement(ref _inFlight);
            return AutoNatDialResponse.Refused($"{_options.MaxConcurrentDialBacks} dial-backs are running");
        }
        try
        {
            if (!_rate.TryAcquire(context.RemotePeer, AddressOrigin.Of(observed, out _), out var refusal))
                return AutoNatDialResponse.Refused(refusal!);
            return await DialBackAsync(context, targets, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private async Task<AutoNatDialResponse> DialBackAsync(StreamContext context, List<Multiaddress> targets, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.DialBackTimeout, _host.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var errors = new List<string>(targets.Count);
        foreach (var target in targets)
        {
            try
            {
                await _host.ProbeDialAsync(target, context.RemotePeer, _dialBackIdentity, linked.Token);
                return new AutoNatDialResponse(AutoNatResponseStatus.Ok, string.Empty, target);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                errors.Add($"{target}: no connection within {_options.DialBackTimeout}");
                return DialError(errors, target);
            }
            catch (Exception e) when (e is IOException or TimeoutException)
            {
                errors.Add($"{target}: {e.Message}");
            }
        }
        return DialError(errors, targets[^1]);
    }

    /// <summary>Error texts can quote whole exception chains; the answer must stay far below the message cap.</summary>
    private static AutoNatDialResponse DialError(List<string> errors, Multiaddress lastTried)
    {
        var text = string.Join("; ", errors);
        if (text.Length > MaxStatusTextLength) text = text[..MaxStatusTextLength] + "…";
        return new AutoNatDialResponse(AutoNatResponseStatus.DialError, text, lastTried);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _host.Unhandle(AutoNatMessageCodec.ProtocolId);
    }
}
