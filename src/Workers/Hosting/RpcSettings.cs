using P2PInference.Facilities.Rpc;

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
}
