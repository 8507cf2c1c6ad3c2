namespace P2PInference.Facilities.Net.Transport;

/// <summary>A dial or listen failed at the transport: unreachable, refused, address in use, partitioned.</summary>
public class TransportException(string message, Exception? inner = null) : IOException(message, inner);
