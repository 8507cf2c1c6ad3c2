using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// A relay (or the target, through it) answered a reservation or a connection with a status other
/// than OK. A <see cref="TransportException"/>, so a host dialling several addresses goes on to the next.
/// </summary>
public sealed class RelayRefusedException(RelayStatus status, string message, Exception? inner = null)
    : TransportException(message, inner)
{
    public RelayStatus Status { get; } = status;
}
