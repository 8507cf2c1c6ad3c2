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

    /// <summary>An error asking the caller to come back after <paramref name="retryAfter"/>.</summary>
    public static RpcException WithRetryAfter(RpcStatusCode code, string message, TimeSpan retryAfter) =>
        new(code, message, new Dictionary<string, string>
        {
            [RetryAfterKey] = ((long)Math.Ceiling(retryAfter.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture),
        });
}
