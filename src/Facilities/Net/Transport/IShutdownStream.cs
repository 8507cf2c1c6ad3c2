namespace P2PInference.Facilities.Net.Transport;

/// <summary>
/// A connection stream that a local close can end quietly, as TCP's orderly release does: after
/// <see cref="TryShutdownWrites"/> the remote sees end of stream, answers with its own, and the
/// pending read then returns 0 bytes. A read loop closing its own connection thus stops without an
/// exception (a cancelled socket read throws through every layer above it), and since whatever
/// the remote sent meanwhile is still read, closing the socket does not reset the remote's writes.
/// </summary>
internal interface IShutdownStream
{
    /// <summary>
    /// Ends this side's writes (a TCP FIN) and leaves reads open. False when this stream, or the
    /// one beneath it, cannot: the caller then cancels its reads.
    /// </summary>
    bool TryShutdownWrites();
}
