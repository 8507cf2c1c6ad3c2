using Microsoft.Extensions.Logging;

namespace P2PInference.Tests.E2E.OpenAi;

/// <summary>
/// Keeps the last <see cref="Capacity"/> log lines of an in-process network, so a test that waits on
/// something two hops away can say, when it gives up, how far the thing travelled: the workers' and
/// the OpenAI endpoint's debug lines (a cancel seen by client serve, the gateway, the processor).
/// </summary>
internal sealed class RecordedLog : ILoggerFactory, ILoggerProvider
{
    public const int Capacity = 4096;

    private readonly Queue<string> _lines = new();
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Found)> _waiters = [];
    private long _written;

    /// <summary>A position to read from later: lines written after it are <see cref="Since"/> it.</summary>
    public long Mark()
    {
        lock (_lines) return _written;
    }

    /// <summary>The lines written since <paramref name="mark"/> that are still kept.</summary>
    public IReadOnlyList<string> Since(long mark)
    {
        lock (_lines)
        {
            var skip = Math.Max(0, mark - (_written - _lines.Count));
            return _lines.Skip((int)Math.Min(skip, _lines.Count)).ToArray();
        }
    }

    /// <summary>The first line since <paramref name="mark"/> that <paramref name="match"/> accepts, as soon as it is written.</summary>
    public Task<string> WaitForAsync(long mark, Func<string, bool> match, CancellationToken ct)
    {
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            if (Since(mark).FirstOrDefault(match) is { } line) return Task.FromResult(line);
            _waiters.Add((match, found));
        }
        return found.Task.WaitAsync(ct);
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("a recorded log has no other providers");

    public void Dispose()
    {
    }

    private void Write(string line)
    {
        lock (_lines)
        {
            if (_lines.Count == Capacity) _lines.Dequeue();
            _lines.Enqueue(line);
            _written++;
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (!_waiters[i].Match(line)) continue;
                _waiters[i].Found.TrySetResult(line);
                _waiters.RemoveAt(i);
            }
        }
    }

    private sealed class Logger(RecordedLog log, string category) : ILogger
    {
        // The workers and the RPC layer tell at Debug where a request went; the rest is noise here.
        private readonly LogLevel _minimum = category.StartsWith("P2PInference.Workers", StringComparison.Ordinal)
            || category.StartsWith("P2PInference.Facilities.Rpc", StringComparison.Ordinal) ? LogLevel.Debug : LogLevel.Information;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= _minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            var line = $"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel,-11} {category[(category.LastIndexOf('.') + 1)..]}: {formatter(state, exception)}";
            if (exception is not null) line += $" [{exception.GetType().Name}: {exception.Message}]";
            log.Write(line);
        }
    }
}
