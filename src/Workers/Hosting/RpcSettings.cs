using System.Collections.Frozen;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;

namespace P2PInference.Workers.Hosting;

/// <summary>The <c>Rpc</c> section (see <see cref="RpcOptions"/> for what each does).</summary>
public sealed class RpcSettings
{
    public int MaxMessageSize { get; set; } = RpcOptions.DefaultMaxMessageSize;

    public int MaxConcurrentCallsPerPeer { get; set; } = 256;

    public long MaxInFlightBytesPerPeer { get; set; } = RpcOptions.DefaultMaxInFlightBytesPerPeer;

    /// <summary>Deadline of calls that set none; unset: none.</summary>
    public TimeSpan? DefaultTimeout { get; set; }

    public TimeSpan RequestReadTimeout { get; set; } = TimeSpan.FromSeconds(30);

    public TimeSpan TopicCacheTtl { get; set; } = TimeSpan.FromSeconds(30);

    public int MaxTopicAttempts { get; set; } = 3;

    /// <summary>
    /// How long a bulk call (inference) waits for a direct connection when the only one to the peer is
    /// a limited (relayed) one; then it goes over the relay (see <see cref="RpcOptions.DirectConnectionWait"/>).
    /// </summary>
    public TimeSpan DirectConnectionWait { get; set; } = RpcOptions.DefaultDirectConnectionWait;

    /// <summary>The worker methods that carry inference: kept off limited connections for up to <see cref="DirectConnectionWait"/>.</summary>
    public static IReadOnlySet<string> BulkMethods { get; } = new[]
    {
        WorkerMethods.Processor.Infer, WorkerMethods.Processor.InferStream, WorkerMethods.Gateway.Infer, WorkerMethods.Gateway.InferStream,
    }.ToFrozenSet(StringComparer.Ordinal);
}
