namespace P2PInference.Workers.Contracts;

/// <summary>The DHT topics workers announce and look up (docs/architecture.md).</summary>
public static class WorkerTopics
{
    public const string Auth = "p2pinference/auth";
    public const string Gateway = "p2pinference/gateway";
    public const string Processor = "p2pinference/processor";

    public static string Model(string name) => "p2pinference/model/" + name;
}
