using P2PInference.Facilities.Net;

namespace P2PInference.Facilities.Encoding;

/// <summary>
/// A length-prefixed message could not be decoded: its varint prefix is overlong or not minimal,
/// or its body is not the protobuf or MessagePack message the reader expected.
/// </summary>
public sealed class MalformedMessageException(string message, Exception? inner = null)
    : WireProtocolException(LengthPrefixedMessage.ProtocolName, message, inner);
