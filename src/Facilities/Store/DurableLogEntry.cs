namespace P2PInference.Facilities.Store;

/// <summary>One entry of a <see cref="DurableLog"/>: its position (increasing in append order) and its bytes.</summary>
public readonly record struct DurableLogEntry(long Position, byte[] Data);
