using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// The facilities a worker runs on, as the seams the TestKit twins: unit tests hand a worker an
/// in-memory RPC node, a mock DHT, a RAM store and fake time; the runtime hands it the real ones.
/// </summary>
public sealed class WorkerContext
{
    public required KeyPair Identity { get; init; }
    public required IRpcServer Server { get; init; }
    public required IRpcClient Client { get; init; }
    public required IDiscovery Discovery { get; init; }
    public required IKeyValueStore Store { get; init; }
    public TimeProvider Time { get; init; } = TimeProvider.System;
    public required Random Random { get; init; }

    /// <summary>
    /// Where the worker's secrets and ids come from (salts, token and key ids, API keys). The system
    /// CSPRNG unless a simulation seeds it; choices that need no secrecy use <see cref="Random"/>.
    /// </summary>
    public IRandomSource RandomSource { get; init; } = SystemRandomSource.Instance;
    public ILoggerFactory LoggerFactory { get; init; } = Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
}
