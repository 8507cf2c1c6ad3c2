using P2PInference.Facilities.Threading;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Bounds for duration settings that end up in a timer, a <see cref="CancellationTokenSource"/> or a
/// <see cref="Task.Delay(TimeSpan)"/>: .NET refuses anything longer than
/// <see cref="MaxTimer"/> with an ArgumentOutOfRangeException, so validation refuses it first, naming the setting.
/// </summary>
internal static class DurationLimits
{
    /// <summary>The longest a .NET timer, CancellationTokenSource or Task.Delay accepts (<see cref="TimerLimits.Longest"/>).</summary>
    public static readonly TimeSpan MaxTimer = TimerLimits.Longest;

    /// <summary>Null when <paramref name="value"/> is positive (or zero, when <paramref name="allowZero"/>) and at most <see cref="MaxTimer"/>; else the complaint.</summary>
    public static string? CheckTimer(string path, TimeSpan value, bool allowZero = false)
    {
        if (allowZero ? value < TimeSpan.Zero : value <= TimeSpan.Zero)
            return allowZero ? $"{path} must not be negative; it is {value}" : $"{path} must be positive; it is {value}";
        return value > MaxTimer
            ? $"{path} must be at most {MaxTimer} (about 49.7 days, the longest a timer accepts); it is {value}"
            : null;
    }
}
