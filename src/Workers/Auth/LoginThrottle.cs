namespace P2PInference.Workers.Auth;

/// <summary>
/// Limits login attempts per email: at most <see cref="LoginThrottleOptions.MaxFailures"/> failed
/// attempts within <see cref="LoginThrottleOptions.Window"/>, on the injected clock. A success clears
/// the email's record.
/// </summary>
/// <remarks>
/// <para>An attempt is counted as a failure when it starts (<see cref="BeginAttempt"/>) and
/// forgiven when it succeeds (<see cref="Succeeded"/>), so concurrent guesses cannot all slip in
/// before the first failure is recorded.</para>
/// <para>Emails that have no account are throttled the same way, so the throttle does not reveal
/// which addresses are registered. The state is per worker instance and in memory: a restart
/// forgets it, which at worst grants one more window of attempts. The known trade-off of
/// per-account throttling — someone can keep a user's logins locked by failing on purpose — is
/// bounded by the window.</para>
/// </remarks>
public sealed class LoginThrottle
{
    private readonly LoginThrottleOptions _options;
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private readonly Dictionary<string, Queue<DateTimeOffset>> _failures = new(StringComparer.Ordinal);

    public LoginThrottle(LoginThrottleOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _options = options;
        _time = timeProvider;
    }

    /// <summary>How many emails have failures remembered now.</summary>
    public int TrackedEmails
    {
        get
        {
            lock (_gate)
            {
                return _failures.Count;
            }
        }
    }

    /// <summary>Counts an attempt for <paramref name="email"/> (a failure until <see cref="Succeeded"/>).</summary>
    /// <exception cref="AuthException">ResourceExhausted, with the time until the next attempt is allowed.</exception>
    public void BeginAttempt(string email)
    {
        ArgumentNullException.ThrowIfNull(email);
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            if (!_failures.TryGetValue(email, out var times))
            {
                if (_failures.Count >= _options.MaxTrackedEmails)
                {
                    MakeRoom(now);
                }

                times = new Queue<DateTimeOffset>();
                _failures.Add(email, times);
            }

            Prune(times, now);
            if (times.Count >= _options.MaxFailures)
            {
                var retryAfter = times.Peek() + _options.Window - now;
                throw new AuthException(
                    AuthErrorCode.ResourceExhausted,
                    $"too many failed logins for this email; try again in {Math.Ceiling(retryAfter.TotalSeconds)} s",
                    retryAfter);
            }

            times.Enqueue(now);
        }
    }

    /// <summary>Forgets <paramref name="email"/>'s failures after a successful login.</summary>
    public void Succeeded(string email)
    {
        ArgumentNullException.ThrowIfNull(email);
        lock (_gate)
        {
            _failures.Remove(email);
        }
    }

    private void Prune(Queue<DateTimeOffset> times, DateTimeOffset now)
    {
        while (times.Count > 0 && times.Peek() + _options.Window <= now)
        {
            times.Dequeue();
        }
    }

    // Runs only at capacity. Dropping a tenth at once keeps the cost amortized under a spray of
    // made-up addresses; expired records go first, then those whose last failure is oldest.
    private void MakeRoom(DateTimeOffset now)
    {
        foreach (var (email, times) in _failures)
        {
            Prune(times, now);
            if (times.Count == 0)
            {
                _failures.Remove(email);
            }
        }

        var excess = _failures.Count - _options.MaxTrackedEmails + Math.Max(1, _options.MaxTrackedEmails / 10);
        if (excess <= 0)
        {
            return;
        }

        foreach (var email in _failures.OrderBy(entry => entry.Value.Last()).Take(excess).Select(entry => entry.Key).ToList())
        {
            _failures.Remove(email);
        }
    }
}
