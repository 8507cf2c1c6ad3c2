using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// A file the operator may change while a worker runs (the revocation list, the worker's grant): read
/// at start, where a missing, oversized or malformed file stops the start; then reread every period
/// when its size or write time changed. A reread that fails keeps what the last good read applied in
/// force, with a warning. A read counts only when the file's size and write time are the same after
/// it as before (a few tries), so a file caught while being written is read again at the next period.
/// </summary>
internal sealed class OperatorFileWatcher : IDisposable
{
    private readonly string _path;
    private readonly string _setting;
    private readonly long _maxBytes;
    /// <summary>Reads of a file that keeps changing under them, before this period's reread gives up.</summary>
    private const int MaxReads = 3;

    private readonly Func<string, bool> _apply;
    private readonly ILogger _logger;
    private readonly ITimer _timer;
    private (DateTime Written, long Length) _seen;

    /// <param name="setting">The setting that names the file, for messages (e.g. <c>Trust:Grant</c>).</param>
    /// <param name="apply">Takes the file's text into force; throws <see cref="FormatException"/> or <see cref="InvalidDataException"/> for text it refuses.</param>
    /// <exception cref="WorkerConfigurationException">The file is missing, too large or refused.</exception>
    public OperatorFileWatcher(string path, string setting, long maxBytes, Action<string> apply, TimeProvider time, TimeSpan period, ILogger logger)
        : this(path, setting, maxBytes, text => { apply(text); return true; }, time, period, logger)
    {
    }

    /// <param name="setting">The setting that names the file, for messages (e.g. <c>Trust:Grant</c>).</param>
    /// <param name="apply">
    /// Takes the file's text into force, or returns false to have the file read again at the next
    /// period though it has not changed (to take a text only once two reads agree); throws
    /// <see cref="FormatException"/> or <see cref="InvalidDataException"/> for text it refuses.
    /// </param>
    /// <exception cref="WorkerConfigurationException">The file is missing, too large or refused.</exception>
    public OperatorFileWatcher(string path, string setting, long maxBytes, Func<string, bool> apply, TimeProvider time, TimeSpan period, ILogger logger)
    {
        _path = Path.GetFullPath(path);
        _setting = setting;
        _maxBytes = maxBytes;
        _apply = apply;
        _logger = logger;
        try
        {
            Reload();
        }
        catch (Exception e) when (IsRefusal(e))
        {
            throw new WorkerConfigurationException([$"{setting}: {e.Message}"], e);
        }
        var every = period > TimeSpan.Zero ? period : TimeSpan.FromSeconds(30);
        _timer = time.CreateTimer(_ => Tick(), null, every, every);
    }

    private void Tick()
    {
        try
        {
            var info = new FileInfo(_path);
            if (info.Exists && (info.LastWriteTimeUtc, info.Length) == _seen) return;
            Reload();
        }
        catch (Exception e) when (IsRefusal(e))
        {
            _logger.LogWarning("{Setting} {Path} not reloaded, the previous one stays in force: {Message}", _setting, _path, e.Message);
        }
    }

    private void Reload()
    {
        var (text, stamp) = ReadSettled();
        _seen = stamp;
        if (!_apply(text)) _seen = default;
    }

    /// <summary>The file's text, from a read its size and write time did not change across.</summary>
    /// <exception cref="IOException">It changed across every try: being written, it is read at the next period.</exception>
    private (string Text, (DateTime Written, long Length) Stamp) ReadSettled()
    {
        for (var reads = 1; ; reads++)
        {
            var before = Stamp();
            var text = OperatorFile.ReadAllText(_path, _maxBytes, "file");
            var after = Stamp();
            if (before == after) return (text, after);
            if (reads == MaxReads) throw new IOException($"the file changed while it was read, {MaxReads} times in a row");
        }
    }

    private (DateTime Written, long Length) Stamp()
    {
        var info = new FileInfo(_path);
        return (info.LastWriteTimeUtc, info.Exists ? info.Length : -1);
    }

    private static bool IsRefusal(Exception e) => e is IOException or UnauthorizedAccessException or FormatException or InvalidDataException;

    public void Dispose() => _timer.Dispose();
}
