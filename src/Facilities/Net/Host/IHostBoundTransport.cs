namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// A transport that runs over the host itself (circuit relay: its connections are streams on the
/// host's connections to relays). The host binds it once constructed, before anything is dialled.
/// </summary>
internal interface IHostBoundTransport
{
    void Bind(P2PHost host);
}
