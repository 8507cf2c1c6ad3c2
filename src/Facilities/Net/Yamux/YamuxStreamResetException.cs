namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// A yamux stream was reset (by either end) or its session ended before the stream was closed;
/// <see cref="Exception.InnerException"/> holds the session's error when there was one.
/// </summary>
public sealed class YamuxStreamResetException(string message, Exception? inner = null)
    : YamuxException(message, inner);
