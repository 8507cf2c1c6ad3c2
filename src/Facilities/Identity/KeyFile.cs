namespace P2PInference.Facilities.Identity;

/// <summary>
/// Persists a node's key as the libp2p <c>PrivateKey</c> protobuf, so the node keeps its PeerId
/// across restarts. Files are written owner-only and replaced atomically.
/// </summary>
public static class KeyFile
{
    public static void Save(string path, KeyPair key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp";
        // A leftover temp file (an earlier crash) keeps its old mode under FileMode.Create, and
        // UnixCreateMode applies only to new files: remove it so the key is never world-readable.
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            using (var stream = new FileStream(temp, options))
            {
                stream.Write(key.ExportPrivateKey());
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <exception cref="FileNotFoundException">No key file at the path.</exception>
    /// <exception cref="InvalidDataException">The file is not a key we can read.</exception>
    public static KeyPair Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var bytes = OperatorFile.ReadAllBytes(path, PublicKey.MaxEncodedLength, "key file");
        try
        {
            return KeyPair.ImportPrivateKey(bytes);
        }
        catch (FormatException e)
        {
            throw new InvalidDataException($"key file '{path}' is not a libp2p Ed25519 private key: {e.Message}", e);
        }
    }

    public static KeyPair LoadOrCreate(string path) => LoadOrCreate(path, SystemRandomSource.Instance);

    /// <summary>Loads the key at <paramref name="path"/>, or makes one from <paramref name="source"/> and saves it there.</summary>
    public static KeyPair LoadOrCreate(string path, IRandomSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (File.Exists(path)) return Load(path);
        var key = KeyPair.Generate(source);
        Save(path, key);
        return key;
    }
}
