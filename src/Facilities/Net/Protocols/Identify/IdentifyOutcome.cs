namespace P2PInference.Facilities.Net.Protocols.Identify;

/// <summary>
/// How a connection's one identify exchange ended: what the remote told, or why it told nothing.
/// A failure is carried rather than thrown: a connection closed at once (a dial-and-close) fails its
/// identify routinely, and most such exchanges have nobody waiting for them. Only a caller who asks
/// for the result gets an <see cref="IdentifyException"/>, made for it.
/// </summary>
internal sealed class IdentifyOutcome
{
    private IdentifyException? _exception;

    private IdentifyOutcome(IdentifyInfo? info, string? failure, Exception? cause) => (Info, Failure, Cause) = (info, failure, cause);

    /// <summary>What the remote told; null when the exchange failed.</summary>
    public IdentifyInfo? Info { get; }

    /// <summary>Why the exchange failed; null when it succeeded.</summary>
    public string? Failure { get; }

    /// <summary>What made it fail, when something was thrown; a <see cref="TimeoutException"/> when the remote did not answer in time.</summary>
    public Exception? Cause { get; }

    public bool TimedOut => Cause is TimeoutException;

    public static IdentifyOutcome Succeeded(IdentifyInfo info) => new(info, null, null);

    public static IdentifyOutcome Failed(string failure, Exception? cause = null) => new(null, failure, cause);

    /// <summary>The remote's answer was unusable: that exception is the one every caller gets.</summary>
    public static IdentifyOutcome Failed(IdentifyException unusable) => new(null, unusable.Message, unusable.InnerException) { _exception = unusable };

    /// <exception cref="IdentifyException">The exchange failed; every caller gets the same instance, made by the first who asked.</exception>
    public IdentifyInfo GetInfo()
    {
        if (Info is not null) return Info;
        Interlocked.CompareExchange(ref _exception, new IdentifyException(Failure!, Cause), null);
        throw _exception;
    }
}
