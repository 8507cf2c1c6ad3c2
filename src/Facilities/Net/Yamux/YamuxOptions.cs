namespace P2PInference.Facilities.Net.Yamux;

/// <summary>Limits and timers of a <see cref="YamuxSession"/>.</summary>
public sealed class YamuxOptions
{
    /// <summary>The window every yamux peer assumes for a new stream (spec).</summary>
    public const int DefaultWindowSize = 256 * 1024;

    /// <summary>Receive window granted to each new stream; at least the spec's 256 KiB, which the remote assumes anyway.</summary>
    public int InitialWindowSize { get; init; } = DefaultWindowSize;

    /// <summary>The receive window may grow (auto-tuning on the measured RTT) up to this.</summary>
    public int MaxStreamWindowSize { get; init; } = 16 * 1024 * 1024;

    /// <summary>Open inbound streams allowed at once; past it a new stream is reset, the session stays up.</summary>
    public int MaxInboundStreams { get; init; } = 1024;

    /// <summary>Inbound streams not yet accepted by the application; past it a new stream is reset.</summary>
    public int MaxAcceptBacklog { get; init; } = 256;

    /// <summary>Interval of keep-alive pings; null disables them.</summary>
    public TimeSpan? KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>If neither the pong nor any other frame arrives this long after a keep-alive ping, the session fails.</summary>
    public TimeSpan KeepAliveTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The clock of keep-alives and timeouts; a host gives its sessions its own clock unless this is set to another.</summary>
    public TimeProvider TimeProvider
    {
        get => _timeProvider;
        init => _timeProvider = value;
    }

    private TimeProvider _timeProvider = TimeProvider.System;

    /// <summary>These options on <paramref name="time"/> when they were left on the system clock.</summary>
    internal YamuxOptions OnClock(TimeProvider time)
    {
        if (ReferenceEquals(_timeProvider, time) || !ReferenceEquals(_timeProvider, TimeProvider.System)) return this;
        var copy = (YamuxOptions)MemberwiseClone();
        copy._timeProvider = time;
        return copy;
    }

    internal void Validate()
    {
        if (InitialWindowSize < DefaultWindowSize)
        {
            throw new ArgumentOutOfRangeException(nameof(InitialWindowSize), InitialWindowSize, "The initial window cannot be below the 256 KiB every peer assumes.");
        }

        if (MaxStreamWindowSize < InitialWindowSize)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxStreamWindowSize), MaxStreamWindowSize, "The maximum window cannot be below the initial window.");
        }

        if (MaxInboundStreams < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxInboundStreams), MaxInboundStreams, "Must not be negative.");
        }

        if (MaxAcceptBacklog < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxAcceptBacklog), MaxAcceptBacklog, "Must not be negative.");
        }

        if (KeepAliveInterval is { } interval && interval <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(KeepAliveInterval), interval, "Must be positive, or null to disable keep-alive.");
        }

        if (KeepAliveTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(KeepAliveTimeout), KeepAliveTimeout, "Must be positive.");
        }

        ArgumentNullException.ThrowIfNull(TimeProvider);
    }
}
