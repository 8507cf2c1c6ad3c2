using System.Collections;

namespace P2PInference.Workers.Gateway;

/// <summary>
/// The log scope of one request (its id and trace id), in the key/value form structured log
/// providers read. Two fields instead of a dictionary per scope: a request opens it more than once.
/// </summary>
internal sealed class RequestLogScope(string requestId, string traceId) : IReadOnlyList<KeyValuePair<string, object>>
{
    public int Count => 2;

    public KeyValuePair<string, object> this[int index] => index switch
    {
        0 => new("RequestId", requestId),
        1 => new("TraceId", traceId),
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    public IEnumerator<KeyValuePair<string, object>> GetEnumerator()
    {
        yield return this[0];
        yield return this[1];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => $"RequestId:{requestId} TraceId:{traceId}";
}
