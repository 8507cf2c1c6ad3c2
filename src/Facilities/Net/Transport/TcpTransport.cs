using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Transport;

/// <summary>
/// TCP over the operating system's sockets: dials and listens on <c>/ip4|ip6/…/tcp/N</c> and
/// dials <c>/dns|dns4|dns6/host/tcp/N</c>. A trailing <c>/p2p/&lt;id&gt;</c> on a dial address is
/// allowed and ignored here: checking the remote's identity is the upgrade's job.
/// </summary>
/// <remarks>
/// With <see cref="TcpTransportOptions.ReusePort"/> (the default) dials leave from a listener's
/// port, so a transport belongs to one host: another host's dials would show this one's port.
/// </remarks>
public sealed class TcpTransport : ITransport
{
    // Linux's values; port reuse is used on Linux only (see TcpTransportOptions.ReusePort).
    private const int SolSocket = 1;
    private const int SoReuseAddr = 2;

    private readonly TcpTransportOptions _options;
    private readonly bool _reusePort;
    private readonly List<Listener> _listeners = [];

    public TcpTransport(TcpTransportOptions? options = null)
    {
        _options = options ?? new TcpTransportOptions();
        ArgumentNullException.ThrowIfNull(_options.TimeProvider, nameof(options));
        if (_options.ConnectTimeout <= TimeSpan.Zero && _options.ConnectTimeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(options), _options.ConnectTimeout, "ConnectTimeout must be positive or infinite");
        if (_options.ReceiveBufferSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.ReceiveBufferSize, "ReceiveBufferSize must be positive");
        if (_options.SendBufferSize is <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.SendBufferSize, "SendBufferSize must be positive");
        if (_options.ListenBacklog <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.ListenBacklog, "ListenBacklog must be positive");
        ArgumentNullException.ThrowIfNull(_options.ProxyProtocolSources, nameof(options));
        if (_options.ProxyProtocolSources.Count > 0 && !_options.ProxyProtocol)
            throw new ArgumentException("ProxyProtocolSources names load balancers, but ProxyProtocol is off", nameof(options));
        _reusePort = _options.ReusePort && OperatingSystem.IsLinux();
    }

    /// <summary>Whether accepted connections must start with a PROXY protocol header (<see cref="TcpTransportOptions.ProxyProtocol"/>).</summary>
    public bool ProxyProtocol => _options.ProxyProtocol;

    /// <summary>Whether a connection accepted from <paramref name="remote"/> must start with a PROXY protocol header (<see cref="TcpTransportOptions.ProxyProtocolSources"/>).</summary>
    public bool ExpectsProxyHeaderFrom(IPAddress remote)
    {
        ArgumentNullException.ThrowIfNull(remote);
        if (!_options.ProxyProtocol) return false;
        var sources = _options.ProxyProtocolSources;
        if (sources.Count == 0) return true;
        if (remote.IsIPv4MappedToIPv6) remote = remote.MapToIPv4();
        foreach (var network in sources)
        {
            if (network.Contains(remote)) return true;
        }

        return false;
    }

    public bool CanDial(Multiaddress address) =>
        address is not null && TryGetTarget(address, allowPeerId: true, out var target) && target.Port != 0;

    public bool CanListen(Multiaddress address) =>
        address is not null && TryGetTarget(address, allowPeerId: false, out _);

    /// <exception cref="TransportException">Unsupported address, unresolvable name, refused, unreachable or timed out.</exception>
    public ValueTask<RawConnection> DialAsync(Multiaddress address, CancellationToken cancellationToken) =>
        DialAsync(address, AddressScope.Loopback, cancellationToken);

    /// <exception cref="TransportException">
    /// Unsupported address, unresolvable name, a name that resolves only to addresses narrower than
    /// <paramref name="narrowestScope"/>, refused, unreachable or timed out.
    /// </exception>
    public async ValueTask<RawConnection> DialAsync(Multiaddress address, AddressScope narrowestScope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!TryGetTarget(address, allowPeerId: true, out var target) || target.Port == 0)
            throw new TransportException($"TCP cannot dial '{address}': expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/p2p/<id>]");
        cancellationToken.ThrowIfCancellationRequested();

        using var timeout = new CancellationTokenSource(_options.ConnectTimeout, _options.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            var candidates = await ResolveAsync(address, target, linked.Token);
            // An IP address shows its scope, and whoever stored it checked that (NamedAddresses); a name shows it only now.
            if (target.Ip is null) candidates = Within(candidates, narrowestScope, address);
            var failures = new List<string>();
            foreach (var ip in candidates)
            {
                var endpoint = new IPEndPoint(ip, target.Port);
                try
                {
                    if (LocalEndPointFor(endpoint) is { } from)
                    {
                        try
                        {
                            return Wrap(await ConnectAsync(endpoint, from, linked.Token));
                        }
                        catch (PortTakenException)
                        {
                            // The listener's port already has a connection to this remote (either
                            // way round) or a TIME_WAIT with it: an ephemeral port still connects,
                            // only without the NAT mapping identify reports.
                        }
                    }
                    return Wrap(await ConnectAsync(endpoint, null, linked.Token));
                }
                catch (SocketException e)
                {
                    // An abort caused by the timeout or the caller is reported as such, not as a socket error.
                    linked.Token.ThrowIfCancellationRequested();
                    failures.Add($"{endpoint}: {Describe(e)}");
                }
            }
            throw new TransportException($"TCP dial to '{address}' failed: {string.Join("; ", failures)}");
        }
        catch (OperationCanceledException e) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TransportException($"TCP dial to '{address}' timed out after {_options.ConnectTimeout}", e);
        }
    }

    /// <exception cref="TransportException">Unsupported address, unresolvable name, or the address cannot be bound (in use, not local).</exception>
    public async ValueTask<ITransportListener> ListenAsync(Multiaddress address, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!TryGetTarget(address, allowPeerId: false, out var target))
            throw new TransportException($"TCP cannot listen on '{address}': expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>");
        cancellationToken.ThrowIfCancellationRequested();

        var ip = (await ResolveAsync(address, target, cancellationToken))[0];
        Socket socket;
        try
        {
            socket = Listen(new IPEndPoint(ip, target.Port));
        }
        catch (SocketException e)
        {
            throw new TransportException($"TCP cannot listen on '{address}': {Describe(e)}", e);
        }
        var listener = new Listener(this, socket, (IPEndPoint)socket.LocalEndPoint!);
        lock (_listeners) _listeners.Add(listener);
        return listener;
    }

    private Socket Listen(IPEndPoint endpoint)
    {
        if (!_reusePort) return BindAndListen(NewSocket(endpoint.AddressFamily), endpoint);
        // SO_REUSEPORT alone would let this listener join one already on the port and split its
        // connections with it. A socket with just SO_REUSEADDR still fails on a listening port
        // (yet not over TIME_WAIT); it holds the port while the real listener binds beside it.
        using var probe = NewSocket(endpoint.AddressFamily);
        probe.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
        probe.Bind(endpoint);
        var socket = NewSocket(endpoint.AddressFamily);
        // On Linux .NET's ReuseAddress sets both SO_REUSEADDR and SO_REUSEPORT.
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        return BindAndListen(socket, (IPEndPoint)probe.LocalEndPoint!);
    }

    private Socket BindAndListen(Socket socket, IPEndPoint endpoint)
    {
        try
        {
            socket.Bind(endpoint);
            socket.Listen(_options.ListenBacklog);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static Socket NewSocket(AddressFamily family)
    {
        var socket = new Socket(family, SocketType.Stream, ProtocolType.Tcp);
        // /ip6 means IPv6 only; a node that wants both listens on both addresses.
        if (family == AddressFamily.InterNetworkV6) socket.DualMode = false;
        return socket;
    }

    /// <summary>
    /// The listener address a dial to <paramref name="remote"/> leaves from, or null for an
    /// ephemeral port: the listener on the very address the kernel routes from, else one on the
    /// unspecified address; none when that would aim the socket at its own port.
    /// </summary>
    private IPEndPoint? LocalEndPointFor(IPEndPoint remote)
    {
        if (!_reusePort) return null;
        IPEndPoint[] listening;
        lock (_listeners) listening = [.. _listeners.Select(l => l.EndPoint).Where(e => e.AddressFamily == remote.AddressFamily)];
        if (listening.Length == 0 || RouteSource(remote) is not { } source) return null;
        var any = remote.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any;
        var chosen = Array.Find(listening, e => e.Address.Equals(source)) ?? Array.Find(listening, e => e.Address.Equals(any));
        // A remote on this machine at the listener's own port: the SYN would meet the dialling
        // socket itself (a TCP self-connect) instead of the listener.
        if (chosen is null || (chosen.Port == remote.Port && source.Equals(remote.Address))) return null;
        return chosen;
    }

    /// <summary>The local address the kernel sends to <paramref name="remote"/> from: a UDP socket's connect picks it without sending anything.</summary>
    private static IPAddress? RouteSource(IPEndPoint remote)
    {
        try
        {
            using var probe = new Socket(remote.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            probe.Connect(remote);
            return ((IPEndPoint)probe.LocalEndPoint!).Address;
        }
        catch (SocketException)
        {
            return null;
        }
    }

    /// <exception cref="PortTakenException"><paramref name="from"/> cannot be used toward this remote.</exception>
    /// <exception cref="SocketException">The connect failed.</exception>
    private async Task<Socket> ConnectAsync(IPEndPoint remote, IPEndPoint? from, CancellationToken cancellationToken)
    {
        var socket = NewSocket(remote.AddressFamily);
        try
        {
            Configure(socket);
            if (from is not null)
            {
                try
                {
                    socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                    socket.Bind(from);
                }
                catch (SocketException e)
                {
                    throw new PortTakenException(e);
                }
            }
            try
            {
                await socket.ConnectAsync(remote, cancellationToken);
            }
            // Linux checks the four-tuple at connect: EADDRNOTAVAIL when it is in use.
            catch (SocketException e) when (from is not null && e.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.AddressAlreadyInUse)
            {
                throw new PortTakenException(e);
            }
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private sealed class PortTakenException(SocketException inner) : Exception(inner.Message, inner);

    private void Remove(Listener listener)
    {
        lock (_listeners) _listeners.Remove(listener);
    }

    private async Task<IPAddress[]> ResolveAsync(Multiaddress address, Target target, CancellationToken cancellationToken)
    {
        if (target.Ip is not null) return [target.Ip];
        IPAddress[] found;
        try
        {
            found = await _options.Resolver(target.Host, target.Family, cancellationToken);
        }
        catch (SocketException e)
        {
            throw new TransportException($"cannot resolve '{target.Host}' in '{address}': {Describe(e)}", e);
        }
        catch (ArgumentException e)
        {
            throw new TransportException($"cannot resolve '{target.Host}' in '{address}': {e.Message}", e);
        }
        var usable = found
            .Select(ip => ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip)
            .Where(ip => target.Family == AddressFamily.Unspecified ? ip.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6 : ip.AddressFamily == target.Family)
            .Distinct()
            .ToArray();
        if (usable.Length == 0)
        {
            var wanted = target.Family switch
            {
                AddressFamily.InterNetwork => "IPv4 address",
                AddressFamily.InterNetworkV6 => "IPv6 address",
                _ => "address",
            };
            throw new TransportException($"cannot resolve '{target.Host}' in '{address}': it has no {wanted}");
        }
        return usable;
    }

    /// <summary>The resolved addresses of <paramref name="narrowest"/> scope or wider.</summary>
    /// <exception cref="TransportException">None is.</exception>
    private static IPAddress[] Within(IPAddress[] resolved, AddressScope narrowest, Multiaddress address)
    {
        if (narrowest == AddressScope.Loopback) return resolved;
        var within = Array.FindAll(resolved, ip => AddressScopes.Of(ip) >= narrowest);
        if (within.Length == 0)
            throw new TransportException(
                $"refusing to dial '{address}': it resolves only to addresses narrower than {narrowest} scope ({string.Join(", ", resolved.Select(ip => ip.ToString()))}), "
                + "and whoever named it may not aim our dials there");
        return within;
    }

    private void Configure(Socket socket)
    {
        socket.NoDelay = true;
        if (_options.ReceiveBufferSize is { } receive) socket.ReceiveBufferSize = receive;
        if (_options.SendBufferSize is { } send) socket.SendBufferSize = send;
    }

    private static RawConnection Wrap(Socket socket, bool startsWithProxyHeader = false)
    {
        var local = Multiaddress.FromIPEndPoint((IPEndPoint)socket.LocalEndPoint!);
        var remote = Multiaddress.FromIPEndPoint((IPEndPoint)socket.RemoteEndPoint!);
        return new RawConnection(new TcpConnectionStream(socket), local, remote) { StartsWithProxyHeader = startsWithProxyHeader };
    }

    private static string Describe(SocketException e) => $"{e.SocketErrorCode} ({e.Message})";

    private readonly record struct Target(string Host, IPAddress? Ip, AddressFamily Family, int Port);

    /// <summary>
    /// Accepts exactly host + tcp (+ p2p when dialing): anything else stacked on top (ws, tls…)
    /// needs a transport that speaks it.
    /// </summary>
    private static bool TryGetTarget(Multiaddress address, bool allowPeerId, out Target target)
    {
        target = default;
        var components = address.Components;
        if (components.Count is < 2 or > 3) return false;
        if (components[1].Protocol.Code != MultiaddressProtocol.Tcp.Code) return false;
        if (components.Count == 3 && (!allowPeerId || components[2].Protocol.Code != MultiaddressProtocol.P2p.Code)) return false;
        var port = BinaryPrimitives.ReadUInt16BigEndian(components[1].Value.Span);
        var host = components[0];
        var code = host.Protocol.Code;
        if (code == MultiaddressProtocol.Ip4.Code || code == MultiaddressProtocol.Ip6.Code)
        {
            var ip = new IPAddress(host.Value.Span);
            target = new Target(ip.ToString(), ip, ip.AddressFamily, port);
            return true;
        }
        AddressFamily family;
        if (code == MultiaddressProtocol.Dns.Code) family = AddressFamily.Unspecified;
        else if (code == MultiaddressProtocol.Dns4.Code) family = AddressFamily.InterNetwork;
        else if (code == MultiaddressProtocol.Dns6.Code) family = AddressFamily.InterNetworkV6;
        else return false;
        target = new Target(host.ValueText, null, family, port);
        return true;
    }

    private sealed class Listener(TcpTransport transport, Socket socket, IPEndPoint endPoint) : ITransportListener
    {
        private int _disposed;

        public IPEndPoint EndPoint { get; } = endPoint;

        public Multiaddress Address { get; } = Multiaddress.FromIPEndPoint(endPoint);

        public async ValueTask<RawConnection> AcceptAsync(CancellationToken cancellationToken)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            while (true)
            {
                Socket accepted;
                try
                {
                    accepted = await socket.AcceptAsync(cancellationToken);
                }
                catch (Exception e) when ((e is SocketException or ObjectDisposedException) && Volatile.Read(ref _disposed) != 0)
                {
                    throw new ObjectDisposedException($"the TCP listener on '{Address}' was closed", e);
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
                {
                    // The remote gave up while queued; that is its problem, not the listener's.
                    continue;
                }
                catch (SocketException e)
                {
                    throw new TransportException($"TCP accept on '{Address}' failed: {Describe(e)}", e);
                }

                try
                {
                    transport.Configure(accepted);
                    return Wrap(accepted, transport.ExpectsProxyHeaderFrom(((IPEndPoint)accepted.RemoteEndPoint!).Address));
                }
                catch (SocketException)
                {
                    // Reset between accept and setup: drop it and wait for the next one.
                    accepted.Dispose();
                }
            }
        }

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                transport.Remove(this);
                socket.Dispose();
            }
            return ValueTask.CompletedTask;
        }
    }
}
