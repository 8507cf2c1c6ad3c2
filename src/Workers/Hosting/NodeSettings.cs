using Microsoft.Extensions.Logging;

namespace P2PInference.Workers.Hosting;

/// <summary>The <c>Node</c> section: where a node keeps its data, where it listens, whom it dials first.</summary>
public sealed class NodeSettings
{
    /// <summary>Holds identity.key and the store. Unset: <c>data/&lt;role&gt;</c> under the current directory.</summary>
    public string? DataDir { get; set; }

    /// <summary>Multiaddrs to listen on, e.g. <c>/ip4/127.0.0.1/tcp/4001</c> (port 0 picks a free one).</summary>
    public List<string> Listen { get; set; } = ["/ip4/127.0.0.1/tcp/0"];

    /// <summary>Full multiaddrs (ending in /p2p/&lt;PeerId&gt;) of DHT peers to join through.</summary>
    public List<string> Bootstrap { get; set; } = [];

    /// <summary>How long calls in flight may finish after a stop began.</summary>
    public TimeSpan DrainTimeout { get; set; } = WorkerRuntimeOptions.DefaultDrainTimeout;

    /// <summary>Least severe log level written to stderr.</summary>
    public LogLevel LogLevel { get; set; } = LogLevel.Information;
}
