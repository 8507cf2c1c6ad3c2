using NUnit.Framework;

namespace P2PInference.TestKit;

/// <summary>
/// Byte-for-byte equality of large buffers, at memory speed.
/// </summary>
/// <remarks>
/// NUnit's <c>Is.EqualTo</c> walks an array element by element through its generic, boxing
/// equality: about a second per MiB even on an idle machine, so a test of a large value spends
/// its time in the assertion. This compares with a vectorised span comparison and, on failure,
/// says where the first difference is, which is what one needs to read a broken transfer.
/// </remarks>
public static class BytesAssert
{
    /// <summary>Fails unless <paramref name="actual"/> holds exactly the bytes of <paramref name="expected"/>.</summary>
    public static void AreEqual(byte[] expected, byte[]? actual, string? message = null)
    {
        Assert.That(actual, Is.Not.Null, message);
        var got = actual!;
        var same = got.AsSpan().CommonPrefixLength(expected);
        if (same == expected.Length && same == got.Length)
        {
            return;
        }

        var prefix = message is null ? "" : message + ": ";
        Assert.Fail(same < expected.Length && same < got.Length
            ? $"{prefix}bytes differ first at index {same} of {expected.Length}: expected 0x{expected[same]:X2}, got 0x{got[same]:X2}"
            : $"{prefix}expected {expected.Length} bytes, got {got.Length}; equal up to index {same}");
    }
}
