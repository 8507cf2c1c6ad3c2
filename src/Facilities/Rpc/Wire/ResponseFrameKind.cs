namespace P2PInference.Facilities.Rpc.Wire;

public enum ResponseFrameKind
{
    Invalid,
    Payload,
    Error,
    End,
}
