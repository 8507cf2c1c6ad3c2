namespace P2PInference.Facilities.Threading;

/// <summary>What .NET's timers accept: the one bound an RPC timeout and a configured duration are held to.</summary>
public static class TimerLimits
{
    /// <summary>
    /// The longest a timer, a <see cref="CancellationTokenSource"/> or a delay accepts (4,294,967,294 ms, about
    /// 49.7 days); anything longer throws <see cref="ArgumentOutOfRangeException"/> where it is armed.
    /// </summary>
    public static readonly TimeSpan Longest = TimeSpan.FromMilliseconds(uint.MaxValue - 1);
}
