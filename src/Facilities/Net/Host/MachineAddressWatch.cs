using System.Net.NetworkInformation;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// Tells a host listening on 0.0.0.0 or :: that the machine's addresses changed (a laptop joins another network, DHCP
/// hands out a new lease, an interface comes up), once they have been quiet for <see cref="Settle"/>: the operating
/// system reports such a change as a burst of events, and each reading of the interfaces costs a walk of them all.
/// </summary>
internal sealed class MachineAddressWatch : IDisposable
{
    /// <summary>How long the addresses must stay unchanged before they are read again.</summary>
    public static readonly TimeSpan Settle = TimeSpan.FromSeconds(1);

    private readonly Func<Action, IDisposable> _subscribe;
    private readonly TimeProvider _time;
    private readonly Action _changed;
    private readonly Lock _gate = new();
    private IDisposable? _subscription;
    private ITimer? _settled;
    private bool _disposed;

    /// <param name="subscribe">Subscribes to the machine's address changes (<see cref="OfThisMachine"/>; replaced in tests).</param>
    /// <param name="changed">Called once the addresses settled after a change, on a timer of <paramref name="time"/>.</param>
    public MachineAddressWatch(Func<Action, IDisposable> subscribe, TimeProvider time, Action changed)
    {
        _subscribe = subscribe;
        _time = time;
        _changed = changed;
    }

    /// <summary>Starts watching, if not yet: only a host with a listener on an unspecified address needs to.</summary>
    public void Start()
    {
        lock (_gate)
        {
            if (_disposed || _subscription is not null) return;
            _settled = _time.CreateTimer(static watch => ((MachineAddressWatch)watch!)._changed(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _subscription = _subscribe(OnChange);
        }
    }

    private void OnChange()
    {
        lock (_gate)
        {
            if (!_disposed) _settled?.Change(Settle, Timeout.InfiniteTimeSpan);
        }
    }

    public void Dispose()
    {
        IDisposable? subscription;
        ITimer? settled;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            (subscription, settled) = (_subscription, _settled);
        }
        subscription?.Dispose();
        settled?.Dispose();
    }

    /// <summary>The operating system's notice of address changes (a netlink socket on Linux).</summary>
    public static IDisposable OfThisMachine(Action changed)
    {
        NetworkAddressChangedEventHandler handler = (_, _) => changed();
        try
        {
            NetworkChange.NetworkAddressChanged += handler;
        }
        catch (Exception e) when (e is NetworkInformationException or PlatformNotSupportedException)
        {
            // A sandbox without netlink: the addresses read at the last change of listeners stay announced.
            return new Unsubscribe(null);
        }
        return new Unsubscribe(handler);
    }

    private sealed class Unsubscribe(NetworkAddressChangedEventHandler? handler) : IDisposable
    {
        public void Dispose()
        {
            if (handler is not null) NetworkChange.NetworkAddressChanged -= handler;
        }
    }
}
