namespace P2PInference.Facilities.Store;

/// <summary>
/// The store cannot do what was asked: its data directory is unusable or corrupted, a write could
/// not be made durable, or the store was shut down. <see cref="Path"/> names the file or directory
/// at fault when there is one.
/// </summary>
public sealed class StoreException : IOException
{
    public StoreException(string message, string? path = null, Exception? inner = null)
        : base(path is null ? message : $"{message} (path: {path})", inner)
    {
        Path = path;
    }

    public string? Path { get; }
}
