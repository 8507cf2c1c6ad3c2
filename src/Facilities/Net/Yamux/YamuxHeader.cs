using System.Buffers.Binary;

namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// The fixed 12-byte yamux frame header: version, type, flags, stream id, length (big endian).
/// For Data the length counts the payload bytes that follow; for WindowUpdate it is the window
/// delta, for Ping the opaque value, for GoAway the error code; those frames carry no payload.
/// </summary>
public readonly record struct YamuxHeader(byte Version, YamuxFrameType Type, YamuxFlags Flags, uint StreamId, uint Length)
{
    public const int Size = 12;

    public YamuxHeader(YamuxFrameType type, YamuxFlags flags, uint streamId, uint length)
        : this(0, type, flags, streamId, length)
    {
    }

    public void Write(Span<byte> destination)
    {
        if (destination.Length < Size)
        {
            throw new ArgumentException("Destination is shorter than a yamux header.", nameof(destination));
        }

        destination[0] = Version;
        destination[1] = (byte)Type;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)Flags);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], StreamId);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], Length);
    }

    /// <summary>Decodes the fields without judging them; the session validates version and type.</summary>
    public static YamuxHeader Read(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size)
        {
            throw new ArgumentException("Source is shorter than a yamux header.", nameof(source));
        }

        return new YamuxHeader(
            source[0],
            (YamuxFrameType)source[1],
            (YamuxFlags)BinaryPrimitives.ReadUInt16BigEndian(source[2..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[4..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[8..]));
    }
}
