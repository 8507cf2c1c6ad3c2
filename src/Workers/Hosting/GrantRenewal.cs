using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Keeps a worker's grant current while it runs, so a worker outlives its grant's lifetime without a
/// restart. A grant the worker signed itself (with the cluster key) is re-signed once two thirds of
/// its validity have passed. A pre-issued grant is reread from its file when the file changes: a new
/// grant this node can use replaces the held one; one it cannot use (another peer, role or cluster,
/// expired, revoked) is refused with a warning and the held one stays. A pre-issued grant with a
/// tenth of its lifetime left and no replacement is warned about.
/// </summary>
internal sealed class GrantRenewal : IDisposable
{
    private readonly HeldGrant _held;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Func<RoleGrant>? _reissue;
    private readonly string? _path;
    private readonly ITimer _timer;
    private readonly OperatorFileWatcher? _file;
    private readonly Lock _lock = new();

    private GrantRenewal(HeldGrant held, TimeProvider time, ILogger logger, Func<RoleGrant>? reissue, string? path)
    {
        _held = held;
        _time = time;
        _logger = logger;
        _reissue = reissue;
        _path = path;
        _timer = time.CreateTimer(_ => OnDue(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        Arm();
    }

    private GrantRenewal(HeldGrant held, TimeProvider time, ILogger logger, string path, Func<RoleGrant, string?> unusable, TimeSpan period)
        : this(held, time, logger, null, path)
    {
        _file = new OperatorFileWatcher(path, "Trust:Grant", RoleGrant.MaxFileBytes, text => Take(RoleGrant.FromText(text), unusable), time, period, logger);
    }

    /// <summary>Re-signs <paramref name="held"/> with <paramref name="key"/> before it expires, each time valid for <paramref name="validity"/>.</summary>
    public static GrantRenewal SelfSigned(HeldGrant held, ClusterKey key, TimeSpan validity, IRandomSource serials, TimeProvider time, ILogger logger)
    {
        var current = held.Current;
        return new GrantRenewal(held, time, logger, () => key.Issue(current.Peer, current.Role, time.GetUtcNow(), validity, serials), null);
    }

    /// <summary>Replaces <paramref name="held"/> by the grant in <paramref name="path"/> whenever it changes to one <paramref name="unusable"/> does not object to.</summary>
    /// <exception cref="WorkerConfigurationException">The file cannot be read or holds no grant.</exception>
    public static GrantRenewal FromFile(HeldGrant held, string path, Func<RoleGrant, string?> unusable, TimeSpan period, TimeProvider time, ILogger logger) =>
        new(held, time, logger, path, unusable, period);

    private void Take(RoleGrant grant, Func<RoleGrant, string?> unusable)
    {
        if (grant.ToText() == _held.Current.ToText()) return;
        if (unusable(grant) is { } why) throw new InvalidDataException($"the new grant cannot be used: {why}");
        try
        {
            _held.Replace(grant);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
        _logger.LogInformation("now holding {Grant}", grant);
        Arm();
    }

    private void OnDue()
    {
        if (_time.GetUtcNow() < DueAt(_held.Current))
        {
            Arm();
            return;
        }
        if (_reissue is null)
        {
            var grant = _held.Current;
            _logger.LogWarning("{Grant} expires at {Expiry:u}: issue a new one (p2pinference cluster grant … --out FILE) and write it to {Path}; the worker takes it up while it runs",
                grant, grant.Expiry, _path);
            return;
        }
        RoleGrant renewed;
        try
        {
            renewed = _reissue();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _logger.LogError(e, "could not renew the grant; the held one stays until {Expiry:u}", _held.Current.Expiry);
            return;
        }
        _held.Replace(renewed);
        _logger.LogInformation("renewed the grant: now holding {Grant}", renewed);
        Arm();
    }

    /// <summary>Renewal at two thirds of the grant's lifetime; the warning at nine tenths.</summary>
    private DateTimeOffset DueAt(RoleGrant grant)
    {
        var lifetime = grant.Expiry - grant.NotBefore;
        return grant.NotBefore + (_reissue is null ? lifetime * 0.9 : lifetime * 2 / 3);
    }

    private void Arm()
    {
        lock (_lock)
        {
            var due = DueAt(_held.Current) - _time.GetUtcNow();
            // Timers take at most ~49 days; a longer wait is taken in steps (OnDue re-arms until it is due).
            _timer.Change(due <= TimeSpan.Zero ? TimeSpan.Zero : due < MaxStep ? due : MaxStep, Timeout.InfiniteTimeSpan);
        }
    }

    private static readonly TimeSpan MaxStep = TimeSpan.FromDays(30);

    public void Dispose()
    {
        _file?.Dispose();
        _timer.Dispose();
    }
}
