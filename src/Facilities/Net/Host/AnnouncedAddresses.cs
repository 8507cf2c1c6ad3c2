using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// The addresses a host tells peers to dial it at (identify's listen addresses, the DHT's records of it, a relay's
/// reservation), in this order: the operator's <see cref="HostOptions.AnnounceAddresses"/>; addresses AutoNAT
/// confirmed that others reach it at (<see cref="P2PHost.SetConfirmedAddresses"/>: a cloud VM's 1:1 NAT, a
/// forwarded port); then the listen addresses. A listen address on an unspecified host (<c>0.0.0.0</c>, <c>::</c>)
/// is told as one address per address of the machine in that family, since a peer that dials 0.0.0.0 reaches
/// itself. One array, rebuilt when a part changes: every identify answer and kad reply reads it.
/// </summary>
internal sealed class AnnouncedAddresses
{
    /// <summary>Addresses announced at most: what a peer keeps of one identify message.</summary>
    public const int MaxCount = Protocols.Identify.IdentifyProtocol.MaxListenAddresses;

    private readonly Lock _gate = new();
    private readonly Multiaddress[] _announce;
    private readonly Func<IReadOnlyList<IPAddress>> _machineAddresses;
    private Multiaddress[] _bound = [];
    private Multiaddress[] _listen = [];
    private Multiaddress[] _confirmed = [];
    private volatile Multiaddress[] _all;

    public AnnouncedAddresses(IReadOnlyList<Multiaddress> announce, Func<IReadOnlyList<IPAddress>> machineAddresses)
    {
        _announce = [.. announce.Select(a => a.WithoutPeerId()).Distinct()];
        _machineAddresses = machineAddresses;
        _all = [.. _announce.Take(MaxCount)];
    }

    public IReadOnlyList<Multiaddress> All => _all;

    public IReadOnlyList<Multiaddress> Announce => _announce;

    public IReadOnlyList<Multiaddress> Confirmed
    {
        get
        {
            lock (_gate) return _confirmed;
        }
    }

    /// <summary>Takes the host's bound listen addresses, expanding unspecified hosts; false when <see cref="All"/> stayed the same.</summary>
    public bool SetListen(IReadOnlyList<Multiaddress> bound)
    {
        IReadOnlyList<IPAddress>? machine = null;
        var listen = new List<Multiaddress>(bound.Count);
        foreach (var address in bound)
        {
            if (!address.HasUnspecifiedHost)
            {
                listen.Add(address);
                continue;
            }
            var family = address.Components[0].Protocol.Code == MultiaddressProtocol.Ip4.Code ? AddressFamily.InterNetwork : AddressFamily.InterNetworkV6;
            machine ??= _machineAddresses();
            listen.AddRange(machine.Where(ip => ip.AddressFamily == family).Select(address.WithHost));
        }
        lock (_gate)
        {
            _bound = [.. bound];
            _listen = [.. listen];
            return Rebuild();
        }
    }

    /// <summary>Reads the machine's addresses again (the operating system said they changed); false when <see cref="All"/> stayed the same.</summary>
    public bool RefreshMachineAddresses()
    {
        Multiaddress[] bound;
        lock (_gate) bound = _bound;
        return SetListen(bound);
    }

    /// <summary>Replaces the confirmed addresses; false when they are the ones already held.</summary>
    public bool SetConfirmed(IReadOnlyList<Multiaddress> confirmed)
    {
        var next = confirmed.Select(a => a.WithoutPeerId()).Distinct().ToArray();
        lock (_gate)
        {
            if (next.SequenceEqual(_confirmed)) return false;
            _confirmed = next;
            return Rebuild();
        }
    }

    private bool Rebuild()
    {
        Debug.Assert(_gate.IsHeldByCurrentThread);
        // Peers keep no more than this of one identify, and a machine with many interfaces would otherwise outgrow the
        // message other implementations accept, failing every identify; what comes last (loopback) goes first.
        Multiaddress[] all = [.. _announce.Concat(_confirmed).Concat(_listen).Distinct().Take(MaxCount)];
        if (all.AsSpan().SequenceEqual(_all)) return false;
        _all = all;
        return true;
    }

    /// <summary>
    /// The machine's unicast addresses on interfaces that are up, loopback last (so the first address a worker prints
    /// is one another machine can use). IPv6 link-local ones are left out: they mean nothing without the interface.
    /// </summary>
    public static IReadOnlyList<IPAddress> OfThisMachine()
    {
        var addresses = new List<IPAddress>();
        try
        {
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
            {
                // Linux reports loopback's state as Unknown.
                if (nic.OperationalStatus is not (OperationalStatus.Up or OperationalStatus.Unknown)) continue;
                foreach (var unicast in nic.GetIPProperties().UnicastAddresses)
                {
                    var ip = unicast.Address;
                    if (ip.IsIPv6LinkLocal || addresses.Contains(ip)) continue;
                    addresses.Add(ip);
                }
            }
        }
        catch (NetworkInformationException)
        {
            // No interface list (a sandbox without netlink): loopback below is still true.
        }
        if (!addresses.Contains(IPAddress.Loopback)) addresses.Add(IPAddress.Loopback);
        if (Socket.OSSupportsIPv6 && !addresses.Contains(IPAddress.IPv6Loopback)) addresses.Add(IPAddress.IPv6Loopback);
        return [.. addresses.OrderBy(IPAddress.IsLoopback)];
    }
}
