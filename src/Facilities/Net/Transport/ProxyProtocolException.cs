namespace P2PInference.Facilities.Net.Transport;

/// <summary>A connection that had to start with a PROXY protocol header did not: it is closed, and its address is not believed.</summary>
public sealed class ProxyProtocolException(string message) : TransportException(message);
