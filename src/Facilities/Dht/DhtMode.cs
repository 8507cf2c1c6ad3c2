namespace P2PInference.Facilities.Dht;

/// <summary>
/// Server nodes answer kad requests and are put in others' routing tables; client nodes only ask
/// (they do not register the protocol, so identify never advertises it).
/// </summary>
public enum DhtMode
{
    Server,
    Client,
}
