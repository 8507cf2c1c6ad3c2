namespace P2PInference.Workers.Hosting;

/// <summary>What a node runs: a bootstrap node is a DHT server only; the others run a worker on top.</summary>
public enum WorkerRole
{
    Bootstrap,
    Auth,
    Gateway,
    Processor,
}
