namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// A yamux session failed or refused: the remote broke the protocol, went away, stopped answering
/// keep-alives, or the session is closed. Stream-level failures use <see cref="YamuxStreamResetException"/>.
/// </summary>
public class YamuxException(string message, Exception? inner = null)
    : WireProtocolException("yamux", message, inner);
