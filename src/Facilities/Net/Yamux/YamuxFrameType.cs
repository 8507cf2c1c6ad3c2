namespace P2PInference.Facilities.Net.Yamux;

/// <summary>The type byte of a yamux frame header.</summary>
public enum YamuxFrameType : byte
{
    Data = 0,
    WindowUpdate = 1,
    Ping = 2,
    GoAway = 3,
}
