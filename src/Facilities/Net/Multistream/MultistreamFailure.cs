namespace P2PInference.Facilities.Net.Multistream;

/// <summary>Why a multistream-select negotiation failed.</summary>
public enum MultistreamFailure
{
    /// <summary>The listener answered "na" to every protocol the dialer proposed.</summary>
    NoProtocolSupported,
    /// <summary>A message lacked its trailing newline, was not UTF-8, or was not an answer the state allows.</summary>
    MalformedMessage,
    /// <summary>The first message was not <c>/multistream/1.0.0</c>.</summary>
    WrongHeader,
    /// <summary>A message announced more than <see cref="MultistreamSelect.MaxMessageLength"/> bytes.</summary>
    TooLong,
    /// <summary>The dialer made more proposals than the listener answers.</summary>
    TooManyAttempts,
    /// <summary>The stream ended before the negotiation finished.</summary>
    StreamClosed,
    /// <summary>The answer to a lazy proposal did not arrive within the negotiation timeout.</summary>
    TimedOut,
}
