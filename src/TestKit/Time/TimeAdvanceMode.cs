namespace P2PInference.TestKit.Time;

/// <summary>How <see cref="FakeTimeProvider"/> moves its clock across timers that come due.</summary>
public enum TimeAdvanceMode
{
    /// <summary>
    /// The clock steps to each due time in turn: a timer's callback sees the clock at its own due
    /// time, and a timer created by a callback fires in the same advance when it falls within it.
    /// This is what a real clock does, only faster.
    /// </summary>
    Step = 0,

    /// <summary>
    /// The clock is set to the target at once, then every timer due by then fires, in due order,
    /// with the clock already at the target. A timer created by a callback is due after the target
    /// (unless its due time is zero), so a chain of delays moves one link per advance. This is what
    /// Microsoft.Extensions.TimeProvider.Testing 8.x does.
    /// </summary>
    Jump = 1,
}
