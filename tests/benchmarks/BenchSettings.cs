namespace P2PInference.Benchmarks;

/// <summary>Sizes of one run: the default full run (under ~3 minutes) or <c>--quick</c> (seconds, a smoke test).</summary>
internal sealed record BenchSettings(
    int ThroughputMiB,
    int Pings,
    int Connects,
    int ConnectWarmUp,
    int IdleConnections,
    int IdleStreamConnections,
    int IdleStreamsPerConnection,
    int RpcSeconds,
    int RpcSize,
    int RpcPairs)
{
    /// <summary>How long memory measurements let background work (identify, handler start-up) finish first.</summary>
    public static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(500);

    public static BenchSettings Full { get; } = new(256, 1000, 300, 200, 200, 4, 500, 3, 1024, 7);

    public static BenchSettings Quick { get; } = new(32, 200, 30, 10, 40, 2, 100, 1, 1024, 2);

    public long ThroughputBytes => ThroughputMiB * 1024L * 1024;

    public int IdleStreams => IdleStreamConnections * IdleStreamsPerConnection;
}
