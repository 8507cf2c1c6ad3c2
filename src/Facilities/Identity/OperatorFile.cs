namespace P2PInference.Facilities.Identity;

/// <summary>
/// Reads a file the operator hands a node (a key, a grant, a revocation list) with a size cap, so a
/// wrong path pointing at a log or a disk image fails in one line instead of filling memory. The cap
/// holds while the file is read, not only when its size is looked up: the file may grow in between.
/// </summary>
public static class OperatorFile
{
    /// <param name="description">What the file is, for messages (<c>key file</c>, <c>revocation list</c>).</param>
    /// <exception cref="FileNotFoundException">No file at the path.</exception>
    /// <exception cref="InvalidDataException">The file holds more than <paramref name="maxBytes"/>.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public static byte[] ReadAllBytes(string path, long maxBytes, string description)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBytes);
        if (!File.Exists(path)) throw new FileNotFoundException($"{description} '{path}' does not exist", path);
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        if (file.Length > maxBytes) throw TooLarge(path, file.Length, maxBytes, description);
        var buffer = new byte[maxBytes + 1];
        var read = 0;
        while (read < buffer.Length && file.Read(buffer, read, buffer.Length - read) is var n and > 0) read += n;
        if (read > maxBytes) throw TooLarge(path, file.Length, maxBytes, description);
        return buffer[..read];
    }

    /// <summary>The file as UTF-8 text (a byte order mark is skipped).</summary>
    /// <inheritdoc cref="ReadAllBytes" path="/param"/>
    /// <inheritdoc cref="ReadAllBytes" path="/exception"/>
    public static string ReadAllText(string path, long maxBytes, string description)
    {
        var bytes = ReadAllBytes(path, maxBytes, description);
        var text = bytes.AsSpan();
        if (text.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) text = text[3..];
        return System.Text.Encoding.UTF8.GetString(text);
    }

    private static InvalidDataException TooLarge(string path, long length, long maxBytes, string description) =>
        new($"{description} '{path}' is {Math.Max(length, maxBytes + 1)} bytes, more than {maxBytes}");
}
