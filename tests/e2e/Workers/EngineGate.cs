using P2PInference.Facilities.Threading;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// Lets a test stop one generation, on whichever processor gets it, at an exact point: once armed, the
/// first generation that has produced <c>afterTokens</c> tokens holds there (until the test releases it or
/// the generation is cancelled, e.g. by its processor being killed) and reports which node it is on.
/// Every other generation, before and after, runs straight through. Shared by the engines of one cluster.
/// </summary>
internal sealed class EngineGate
{
    private readonly object _lock = new();
    private int? _afterTokens;
    private TaskCompletionSource<string>? _holding;
    private TaskCompletionSource? _release;

    /// <summary>Arms the gate; the task completes with the name of the node whose generation holds.</summary>
    public Task<string> Arm(int afterTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(afterTokens);
        lock (_lock)
        {
            if (_afterTokens is not null) throw new InvalidOperationException("the gate is armed already");
            _afterTokens = afterTokens;
            _holding = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            _release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _holding.Task;
        }
    }

    /// <summary>Lets a held generation go on.</summary>
    public void Release()
    {
        lock (_lock) _release?.TrySetResult();
    }

    /// <summary>Called by an engine before it produces token number <paramref name="produced"/> (from 0).</summary>
    public async ValueTask PassAsync(string node, int produced, CancellationToken cancellationToken)
    {
        Task release;
        lock (_lock)
        {
            if (_afterTokens != produced || _holding is null || _release is null) return;
            // Disarm first: only this generation holds, the fail-over target runs through.
            _afterTokens = null;
            release = _release.Task;
            _holding.TrySetResult(node);
        }
        await release.WaitOrCancelAsync(cancellationToken);
    }
}
