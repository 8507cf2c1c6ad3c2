using System.Text;

namespace P2PInference.Workers.Auth;

/// <summary>What a new password must satisfy: a length range and at least one letter and one digit.</summary>
public static class PasswordPolicy
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Null when <paramref name="password"/> is acceptable, otherwise what is wrong with it (never the password).</summary>
    public static string? Check(string? password, AuthOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrEmpty(password))
        {
            return "password is required";
        }

        if (password.Length > options.MaxPasswordLength)
        {
            return $"password is longer than {options.MaxPasswordLength} characters";
        }

        if (password.Length < options.MinPasswordLength)
        {
            return $"password must have at least {options.MinPasswordLength} characters";
        }

        if (!IsEncodable(password))
        {
            return "password is not valid Unicode text";
        }

        var letter = false;
        var digit = false;
        foreach (var c in password)
        {
            letter |= char.IsLetter(c);
            digit |= char.IsDigit(c);
            if (char.IsControl(c))
            {
                return "password must not contain control characters";
            }
        }

        return letter && digit ? null : "password must contain both letters and digits";
    }

    /// <summary>
    /// A lone surrogate would be replaced by U+FFFD when hashed, so two different passwords
    /// would hash alike; such text is refused instead.
    /// </summary>
    internal static bool IsEncodable(string text)
    {
        try
        {
            _ = StrictUtf8.GetByteCount(text);
            return true;
        }
        catch (EncoderFallbackException)
        {
            return false;
        }
    }

    internal static byte[] Encode(string text) => StrictUtf8.GetBytes(text);
}
