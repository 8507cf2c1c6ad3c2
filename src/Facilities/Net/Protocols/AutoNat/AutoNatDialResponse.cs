using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>A DIAL_RESPONSE message.</summary>
/// <param name="StatusText">The server's explanation; empty when it sent none.</param>
/// <param name="Address">The address the server reached (or last tried); null when it sent none or one we cannot parse.</param>
public sealed record AutoNatDialResponse(AutoNatResponseStatus Status, string StatusText, Multiaddress? Address)
{
    public static AutoNatDialResponse Refused(string why) => new(AutoNatResponseStatus.DialRefused, why, null);

    public static AutoNatDialResponse BadRequest(string why) => new(AutoNatResponseStatus.BadRequest, why, null);
}
