namespace P2PInference.Facilities.Store;

/// <summary>
/// Checks a data directory before FASTER touches it, so an unusable one fails at open with a
/// <see cref="StoreException"/> that says what is wrong, rather than deep inside FASTER later.
/// </summary>
internal sealed class StoreDirectory : IDisposable
{
    private const string ManifestName = "STORE";
    private const string LockName = "LOCK";
    private readonly FileStream _lock;

    private StoreDirectory(string path, bool isNew, FileStream lockFile)
    {
        Path = path;
        IsNew = isNew;
        _lock = lockFile;
    }

    public string Path { get; }

    /// <summary>True when the directory held no store and one was just started in it.</summary>
    public bool IsNew { get; }

    /// <summary>Validates (or creates) the directory, claims it exclusively and checks its manifest names <paramref name="kind"/>.</summary>
    public static StoreDirectory Open(string path, bool createIfMissing, string kind)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = System.IO.Path.GetFullPath(path);
        if (File.Exists(full))
        {
            throw new StoreException("The data directory is a file, not a directory.", full);
        }

        if (!Directory.Exists(full))
        {
            if (!createIfMissing)
            {
                throw new StoreException("The data directory does not exist.", full);
            }

            try
            {
                PrivateDirectory.Ensure(full);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new StoreException("The data directory cannot be created: " + e.Message, full, e);
            }
        }

        FileStream lockFile;
        try
        {
            // FileShare.None takes an exclusive advisory lock (flock on Unix): a second opener, in
            // this process or another, fails here instead of corrupting the store. The OS drops it
            // when the process dies.
            lockFile = new FileStream(System.IO.Path.Combine(full, LockName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new StoreException("The data directory is not writable: " + e.Message, full, e);
        }
        catch (IOException e)
        {
            throw new StoreException("The data directory is in use by another store instance or not writable: " + e.Message, full, e);
        }

        try
        {
            var manifest = System.IO.Path.Combine(full, ManifestName);
            var expected = kind + "\n";
            if (File.Exists(manifest))
            {
                var text = File.ReadAllText(manifest);
                if (!string.Equals(text, expected, StringComparison.Ordinal))
                {
                    throw new StoreException($"The store manifest is corrupted or belongs to another kind of store (expected '{kind}').", manifest);
                }

                return new StoreDirectory(full, isNew: false, lockFile);
            }

            if (Directory.EnumerateFileSystemEntries(full).Any(e => !string.Equals(System.IO.Path.GetFileName(e), LockName, StringComparison.Ordinal)))
            {
                throw new StoreException("The data directory holds files but no store manifest: it is not a store directory, or the manifest was lost.", full);
            }

            WriteDurably(manifest, expected);
            return new StoreDirectory(full, isNew: true, lockFile);
        }
        catch (StoreException)
        {
            lockFile.Dispose();
            throw;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            lockFile.Dispose();
            throw new StoreException("The data directory cannot be used: " + e.Message, full, e);
        }
    }

    /// <summary>A sub-directory that must already exist in a store that is not new.</summary>
    public string Part(string name, string description)
    {
        var part = System.IO.Path.Combine(Path, name);
        if (File.Exists(part))
        {
            throw new StoreException($"The store's {description} is a file, not a directory.", part);
        }

        if (!Directory.Exists(part))
        {
            if (!IsNew)
            {
                throw new StoreException($"The store's {description} is missing.", part);
            }

            Directory.CreateDirectory(part);
        }

        return part;
    }

    public void Dispose() => _lock.Dispose();

    private static void WriteDurably(string path, string text)
    {
        var temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
            stream.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
    }
}
