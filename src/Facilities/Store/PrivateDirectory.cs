namespace P2PInference.Facilities.Store;

/// <summary>
/// Directories that hold a worker's secrets and data (identity key, password hashes, API-key hashes):
/// created owner-only (0700) on Unix, and tightened to that when they exist with group or other
/// access, so no other user of the machine can list or read what is inside, whatever mode the
/// storage engine gives its own files.
/// </summary>
public static class PrivateDirectory
{
    public const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    private const UnixFileMode GroupOrOther =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Creates <paramref name="path"/> (and missing parents) or tightens it; true when an existing directory was tightened.</summary>
    public static bool Ensure(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
            return false;
        }
        if (!Directory.Exists(path))
        {
            Directory.CreateDirectory(path, OwnerOnly);
            return false;
        }
        var mode = File.GetUnixFileMode(path);
        if ((mode & GroupOrOther) == 0) return false;
        File.SetUnixFileMode(path, mode & ~GroupOrOther);
        return true;
    }
}
