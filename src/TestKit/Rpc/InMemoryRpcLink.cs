namespace P2PInference.TestKit.Rpc;

/// <summary>
/// One direction between two nodes of an <see cref="InMemoryRpcNetwork"/>. A call from A to B sends
/// its request over A→B and its response frames over B→A. Changes apply to messages sent afterwards.
/// </summary>
public sealed class InMemoryRpcLink
{
    private long _latencyTicks;
    private int _fault;

    /// <summary>Delay of each message on the network's <see cref="TimeProvider"/>.</summary>
    public TimeSpan Latency
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _latencyTicks));
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            Interlocked.Exchange(ref _latencyTicks, value.Ticks);
        }
    }

    public RpcLinkFault Fault
    {
        get => (RpcLinkFault)Volatile.Read(ref _fault);
        set => Volatile.Write(ref _fault, (int)value);
    }
}
