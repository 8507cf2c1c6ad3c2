namespace P2PInference.Workers.Simulation;

/// <summary>The invariants a <see cref="NetworkSimulation"/> checks as it goes.</summary>
public sealed class SimulationInvariants
{
    public SimulationInvariant AcknowledgedWritesKept { get; } = new("acknowledged-writes-kept",
        "a registered user can still log in and a created API key still works, after crashes and restarts");

    public SimulationInvariant TypedOutcomes { get; } = new("typed-outcomes",
        "every request succeeded or failed with a typed error (an RPC status or its deadline)");

    public SimulationInvariant NoHang { get; } = new("no-hang",
        "no request ran past its deadline");

    public SimulationInvariant ServedOnce { get; } = new("served-at-most-once",
        "no request was generated twice, and no client got two answers to one request");

    public SimulationInvariant AuthHolds { get; } = new("auth-holds",
        "a request with a bad API key was never served");

    public SimulationInvariant RateLimitHolds { get; } = new("rate-limit-holds",
        "a burst beyond the quota was cut off: no key got more than its burst from each gateway");

    public IReadOnlyList<SimulationInvariant> All => [AcknowledgedWritesKept, TypedOutcomes, NoHang, ServedOnce, AuthHolds, RateLimitHolds];

    public bool AllHold => All.All(i => i.Ok);
}
