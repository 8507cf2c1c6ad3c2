namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>The circuit relay v2 status codes, with the spec's wire values.</summary>
public enum RelayStatus
{
    Unused = 0,
    Ok = 100,
    ReservationRefused = 200,
    ResourceLimitExceeded = 201,
    PermissionDenied = 202,
    ConnectionFailed = 203,
    NoReservation = 204,
    MalformedMessage = 400,
    UnexpectedMessage = 401,
}
