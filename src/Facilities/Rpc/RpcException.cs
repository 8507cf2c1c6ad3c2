using System.Globalization;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// A call failed with <see cref="Code"/>. Handlers throw it to answer with a code of their choice;
/// callers get it for every failure except their own cancellation (an <see cref="OperationCanceledException"/>).
/// </summary>
public sealed class RpcException : Exception
{
    /// <summary>The <see cref="Details"/> key carrying how long to wait before retrying, in milliseconds.</summary>
    public const string RetryAfterKey = "retry-after-ms";

    /// <summary>
    /// The <see cref="Details"/> key marking a failure where the request provably never reached the
    /// handler (see <see cref="NotDelivered"/>). A detail, so it crosses the wire with the error when the server is the one refusing.
    /// </summary>
    public const string NotDeliveredKey = "not-delivered";

    private static readonly IReadOnlyDictionary<string, string> NoDetails = new Dictionary<string, string>(0);

    public RpcException(RpcStatusCode code, string message, IReadOnlyDictionary<string, string>? details = null, Exception? innerException = null)
        : base(message, innerException)
    {
        Code = code;
        Details = details ?? NoDetails;
    }

    public RpcStatusCode Code { get; }

    /// <summary>Machine-readable extras that travel with the error (e.g. <see cref="RetryAfterKey"/>).</summary>
    public IReadOnlyDictionary<string, string> Details { get; }

    /// <summary>When the server asked the caller to wait before retrying (<see cref="RetryAfterKey"/>).</summary>
    public TimeSpan? RetryAfter =>
        Details.TryGetValue(RetryAfterKey, out var text) && long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
            ? TimeSpan.FromMilliseconds(ms)
            : null;

    /// <summary>
    /// True when the request provably never reached the server's handler: the dial failed, the
    /// stream could not be opened or the protocol was refused, or the server turned the call away
    /// before invoking the handler (stopping, over its concurrency limit, unknown method, firewall).
    /// Such a call may be sent to another peer without risk of running twice. False means "maybe
    /// delivered": the handler may have run, in part or whole.
    /// </summary>
    public bool NotDelivered => Details.ContainsKey(NotDeliveredKey);

    /// <summary>A failure where the request provably never reached the handler (<see cref="NotDelivered"/>).</summary>
    public static RpcException Undelivered(RpcStatusCode code, string message, Exception? innerException = null) =>
        new(code, message, new Dictionary<string, string> { [NotDeliveredKey] = "1" }, innerException);

    /// <summary>
    /// A refusal of a call before any of its work was done: by code that wraps a handler and turns the
    /// call away before calling it (a draining worker, a caller without the grant the server requires),
    /// or by a handler that refuses at its very start, having done nothing, because it can serve no one
    /// now (a gateway that Auth does not accept). The server core answers it marked
    /// <see cref="NotDelivered"/>, so the caller may send the call to another peer; it strips that mark
    /// from anything else a handler throws. Only such deliberate refusal code uses it.
    /// </summary>
    /// <remarks>
    /// What the server core honours is a property of this exception object, never of the wire: an error
    /// a handler received from another peer (over the real node, or handed over in-process by the twin,
    /// which passes on a copy the core made) never carries it, so a handler that forwards a downstream
    /// refusal cannot claim by accident that its own call never arrived.
    /// </remarks>
    public static RpcException RefusedBeforeAnyWork(RpcStatusCode code, string message, IReadOnlyDictionary<string, string>? details = null) =>
        new(code, message, details) { IsRefusedBeforeAnyWork = true };

    /// <summary>Made by <see cref="RefusedBeforeAnyWork"/>: the server core answers it as <see cref="NotDelivered"/>.</summary>
    internal bool IsRefusedBeforeAnyWork { get; private init; }

    /// <summary>This error, marked as <see cref="NotDelivered"/> (itself when it is already).</summary>
    public RpcException AsUndelivered()
    {
        if (NotDelivered) return this;
        var details = new Dictionary<string, string>(Details, StringComparer.Ordinal) { [NotDeliveredKey] = "1" };
        return new RpcException(Code, Message, details, InnerException);
    }

    /// <summary>An error asking the caller to come back after <paramref name="retryAfter"/>.</summary>
    public static RpcException WithRetryAfter(RpcStatusCode code, string message, TimeSpan retryAfter) =>
        new(code, message, new Dictionary<string, string>
        {
            [RetryAfterKey] = ((long)Math.Ceiling(retryAfter.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture),
        });
}
