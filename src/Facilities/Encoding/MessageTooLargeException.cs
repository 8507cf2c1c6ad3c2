using P2PInference.Facilities.Net;

namespace P2PInference.Facilities.Encoding;

/// <summary>
/// A length prefix announced a message longer than the reader accepts. Thrown before anything of
/// that size is allocated; the stream is left mid-message and must be closed.
/// </summary>
public sealed class MessageTooLargeException(ulong length, int maxLength)
    : WireProtocolException(LengthPrefixedMessage.ProtocolName, $"message of {length} bytes exceeds the limit of {maxLength}")
{
    /// <summary>The length the remote announced.</summary>
    public ulong Length { get; } = length;

    public int MaxLength { get; } = maxLength;
}
