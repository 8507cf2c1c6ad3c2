using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Transport;

/// <summary>
/// The bottom of the stack: dials and listens on multiaddrs, yielding raw duplex byte streams.
/// TCP in production; the TestKit's in-memory network in tests. Everything above runs unchanged on either.
/// </summary>
public interface ITransport
{
    bool CanDial(Multiaddress address);

    bool CanListen(Multiaddress address);

    /// <exception cref="TransportException">The address is unreachable or refused the connection.</exception>
    ValueTask<RawConnection> DialAsync(Multiaddress address, CancellationToken cancellationToken);

    /// <summary>
    /// Dials <paramref name="address"/>, connecting only to IP addresses of scope <paramref name="narrowestScope"/>
    /// or wider: a DNS name a remote peer gave us may resolve to our loopback or LAN (DNS rebinding), which the
    /// name alone does not show. A transport that resolves no names has nothing to check.
    /// </summary>
    /// <exception cref="TransportException">
    /// The address is unreachable or refused the connection, or its name resolves only to narrower addresses.
    /// </exception>
    ValueTask<RawConnection> DialAsync(Multiaddress address, AddressScope narrowestScope, CancellationToken cancellationToken) =>
        DialAsync(address, cancellationToken);

    /// <exception cref="TransportException">The address cannot be bound.</exception>
    ValueTask<ITransportListener> ListenAsync(Multiaddress address, CancellationToken cancellationToken);
}

/// <summary>A bound listen address that yields inbound connections until disposed.</summary>
public interface ITransportListener : IAsyncDisposable
{
    /// <summary>The address actually bound (an ephemeral port resolved).</summary>
    Multiaddress Address { get; }

    /// <exception cref="ObjectDisposedException">The listener was closed.</exception>
    ValueTask<RawConnection> AcceptAsync(CancellationToken cancellationToken);
}
