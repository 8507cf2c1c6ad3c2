namespace P2PInference.Facilities.Net.Host;

public enum ConnectionDirection
{
    Inbound,
    Outbound,
}
