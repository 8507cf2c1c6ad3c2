namespace P2PInference.Facilities.Net.Host;

/// <summary>A callback registered with <see cref="PeerConnection.OnClosed"/>; disposing it before the close drops the callback.</summary>
internal readonly struct CloseRegistration : IDisposable
{
    private readonly PeerConnection? _connection;
    private readonly int _index;

    internal CloseRegistration(PeerConnection connection, int index)
    {
        _connection = connection;
        _index = index;
    }

    public void Dispose() => _connection?.RemoveCloseCallback(_index);
}
