using System.Net.Sockets;

namespace P2PInference.Facilities.Net.Transport;

/// <summary>
/// A TCP connection's stream, which owns its socket. A local close first shuts down sending only
/// (<see cref="TryShutdownWrites"/>): the remote closes in turn and the pending receive completes
/// with end of stream, where closing the socket under it, or cancelling it, ends it with an exception.
/// </summary>
internal sealed class TcpConnectionStream(Socket socket) : NetworkStream(socket, ownsSocket: true), IShutdownStream
{
    public bool TryShutdownWrites()
    {
        try
        {
            Socket.Shutdown(SocketShutdown.Send);
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Reset by the remote or closed already: a pending read has failed or will, and the caller cancels it.
            return false;
        }
    }
}
