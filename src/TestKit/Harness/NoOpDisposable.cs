namespace P2PInference.TestKit.Harness;

/// <summary>What a <see cref="TestNodeComponent"/> returns when it has nothing to stop.</summary>
public sealed class NoOpDisposable : IAsyncDisposable
{
    public static readonly NoOpDisposable Instance = new();

    private NoOpDisposable()
    {
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
