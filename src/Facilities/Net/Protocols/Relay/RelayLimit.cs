namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// How long a relayed connection may last and how many bytes it may carry in each direction before
/// the relay closes it; null when unlimited. The relay sends it to both ends, which mark the
/// connection limited.
/// </summary>
public sealed record RelayLimit(TimeSpan? Duration, long? Data)
{
    public static RelayLimit Unlimited { get; } = new(null, null);

    public bool IsUnlimited => Duration is null && Data is null;
}
