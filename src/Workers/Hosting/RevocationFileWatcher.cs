using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Keeps a <see cref="GrantVerifier"/>'s revocation list in step with the operator's file: read at
/// start (a bad file stops the start), then reread every period when its size or time changed. A file
/// that became unreadable or malformed keeps the last good list in force, with a warning.
/// </summary>
internal sealed class RevocationFileWatcher : IDisposable
{
    private readonly string _path;
    private readonly GrantVerifier _verifier;
    private readonly ILogger _logger;
    private readonly ITimer _timer;
    private (DateTime Written, long Length) _seen;

    /// <exception cref="WorkerConfigurationException">The file is missing or malformed.</exception>
    public RevocationFileWatcher(string path, GrantVerifier verifier, TimeProvider time, TimeSpan period, ILogger logger)
    {
        _path = Path.GetFullPath(path);
        _verifier = verifier;
        _logger = logger;
        try
        {
            Reload();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or InvalidDataException)
        {
            throw new WorkerConfigurationException([$"Trust:RevocationList: {e.Message}"], e);
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
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or InvalidDataException)
        {
            _logger.LogWarning("revocation list {Path} not reloaded, the previous one stays in force: {Message}", _path, e.Message);
        }
    }

    private void Reload()
    {
        var info = new FileInfo(_path);
        var list = RevocationList.Load(_path);
        _seen = (info.LastWriteTimeUtc, info.Length);
        _verifier.Revocations = list;
        _logger.LogInformation("revocation list {Path}: {Count} entries", _path, list.Count);
    }

    public void Dispose() => _timer.Dispose();
}
