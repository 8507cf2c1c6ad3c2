using System.Runtime.InteropServices;

namespace P2PInference.Workers.Cli;

/// <summary>Waits for SIGINT or SIGTERM (or the token), so a long-running command can stop gracefully and exit 0.</summary>
internal static class ShutdownSignal
{
    public static async Task WaitAsync(CancellationToken cancellationToken)
    {
        var signalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            signalled.TrySetResult();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var registration = cancellationToken.Register(() => signalled.TrySetResult());
        await signalled.Task;
    }
}
