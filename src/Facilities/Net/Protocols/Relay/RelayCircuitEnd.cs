namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>Why a relayed connection ended at the relay.</summary>
public enum RelayCircuitEnd
{
    /// <summary>Both ends closed their side.</summary>
    Closed,

    /// <summary>One end reset its stream or its connection to the relay failed.</summary>
    Failed,

    /// <summary>A direction carried <see cref="RelayLimit.Data"/> bytes.</summary>
    DataLimit,

    /// <summary>The circuit was open for <see cref="RelayLimit.Duration"/>.</summary>
    DurationLimit,

    /// <summary>The relay stopped.</summary>
    Stopped,
}
