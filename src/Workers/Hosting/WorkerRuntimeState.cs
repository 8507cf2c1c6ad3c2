namespace P2PInference.Workers.Hosting;

public enum WorkerRuntimeState
{
    Created,
    Starting,
    Ready,
    Stopping,
    Stopped,
    Failed,
}
