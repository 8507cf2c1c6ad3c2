using System.Runtime.InteropServices;

namespace P2PInference.Workers.Cli;

/// <summary>
/// SIGINT or SIGTERM, caught from the moment it is made, so a long-running command stops gracefully
/// and exits 0. Make it before the command prints that it is up: whoever reads that line may signal at once.
/// </summary>
internal sealed class ShutdownSignal : IDisposable
{
    private readonly TaskCompletionSource _signalled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly PosixSignalRegistration _sigint;
    private readonly PosixSignalRegistration _sigterm;

    private ShutdownSignal()
    {
        _sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    }

    public static ShutdownSignal Listen() => new();

    /// <summary>Until a signal came (also one that came before this call) or the token fires.</summary>
    public async Task WaitAsync(CancellationToken cancellationToken)
    {
        using var registration = cancellationToken.Register(() => _signalled.TrySetResult());
        await _signalled.Task;
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        _signalled.TrySetResult();
    }

    public void Dispose()
    {
        _sigint.Dispose();
        _sigterm.Dispose();
    }
}
