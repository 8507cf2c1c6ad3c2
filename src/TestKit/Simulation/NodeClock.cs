namespace P2PInference.TestKit.Simulation;

/// <summary>
/// One node's view of the simulation clock, for clock-skew faults: its wall clock is off by
/// <see cref="Offset"/> and its time runs <see cref="Drift"/> faster (negative: slower) than the
/// simulation's. Timers are armed on the simulation clock, converted from the node's time, so all
/// nodes' timers stay ordered by the one simulation clock.
/// </summary>
/// <remarks>
/// The offset moves only the wall clock (<see cref="GetUtcNow"/>); timestamps, like a monotonic
/// clock, are affected by drift only. Changing the drift applies from now on; timers already armed
/// keep the duration they were converted to.
/// </remarks>
public sealed class NodeClock : TimeProvider
{
    private readonly SimulationClock _clock;
    private long _anchorSimulationTicks;
    private long _anchorLocalTicks;
    private double _rate;

    internal NodeClock(SimulationClock clock, TimeSpan offset, double drift)
    {
        _clock = clock;
        _anchorSimulationTicks = _anchorLocalTicks = clock.GetUtcNow().UtcTicks;
        Offset = offset;
        _rate = RateOf(drift);
    }

    /// <summary>How far the node's wall clock is ahead of the simulation clock (negative: behind); a step change when set.</summary>
    public TimeSpan Offset { get; set; }

    /// <summary>Relative rate error: 0.001 makes the node's clock gain 1 ms per simulated second. Must be above −1.</summary>
    public double Drift
    {
        get => _rate - 1;
        set
        {
            // Re-anchored so the node's time stays continuous across the change.
            var local = LocalTicks();
            _anchorSimulationTicks = _clock.GetUtcNow().UtcTicks;
            _anchorLocalTicks = local;
            _rate = RateOf(value);
        }
    }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override DateTimeOffset GetUtcNow() => new(LocalTicks() + Offset.Ticks, TimeSpan.Zero);

    public override long GetTimestamp() => LocalTicks();

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        new NodeTimer(this, _clock.CreateTimer(callback, state, ToSimulation(dueTime), ToSimulation(period)));

    /// <summary>The simulation-clock duration in which this node's clock advances by <paramref name="local"/>.</summary>
    public TimeSpan ToSimulation(TimeSpan local) =>
        local <= TimeSpan.Zero ? local : TimeSpan.FromTicks((long)Math.Ceiling(local.Ticks / _rate));

    private long LocalTicks() =>
        _anchorLocalTicks + (long)Math.Floor((_clock.GetUtcNow().UtcTicks - _anchorSimulationTicks) * _rate);

    private static double RateOf(double drift) =>
        drift > -1 && double.IsFinite(drift) ? 1 + drift : throw new ArgumentOutOfRangeException(nameof(drift), drift, "drift must be finite and above -1");

    private sealed class NodeTimer(NodeClock clock, ITimer inner) : ITimer
    {
        public bool Change(TimeSpan dueTime, TimeSpan period) =>
            inner.Change(clock.ToSimulation(dueTime), clock.ToSimulation(period));

        public void Dispose() => inner.Dispose();

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
