namespace P2PInference.Facilities.Dht;

/// <summary>A PUT_VALUE record as stored: the value and when it arrived.</summary>
public sealed record DhtRecord(byte[] Key, byte[] Value, DateTimeOffset Received, DateTimeOffset Expires);
