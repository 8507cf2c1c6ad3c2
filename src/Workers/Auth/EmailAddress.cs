namespace P2PInference.Workers.Auth;

/// <summary>
/// Strict email validation and normalization. Accounts are keyed by the normalized form, so
/// <c>Alice@Example.com</c> and <c>alice@example.com</c> are one account.
/// </summary>
/// <remarks>
/// Stricter than <c>System.Net.Mail.MailAddress</c>, which accepts display names, quoted local
/// parts, comments and IP literals: here only the plain <c>local@domain</c> form in ASCII — the
/// dot-atom local part of RFC 5322 (at most 64 characters, no leading, trailing or doubled dot)
/// and a host name of at least two labels (letters, digits, inner hyphens; at most 63 characters
/// each) whose last label is not numeric. Internationalized addresses are refused rather than
/// normalized: without ICU (invariant globalization) their case-folding and normalization would
/// not be reliable, and two spellings of one address must never become two accounts.
/// </remarks>
public static class EmailAddress
{
    private const string LocalSpecials = "!#$%&'*+-/=?^_`{|}~.";

    /// <summary>The normalized address (trimmed, lower case) or an error message.</summary>
    public static bool TryNormalize(string? email, out string normalized, out string error)
    {
        normalized = string.Empty;
        if (string.IsNullOrEmpty(email))
        {
            error = "email is required";
            return false;
        }

        // Bounded before any work: a megabyte of "email" is refused at once.
        if (email.Length > AuthOptions.MaxEmailLength + 64)
        {
            error = $"email is longer than {AuthOptions.MaxEmailLength} characters";
            return false;
        }

        var trimmed = email.Trim();
        if (trimmed.Length > AuthOptions.MaxEmailLength)
        {
            error = $"email is longer than {AuthOptions.MaxEmailLength} characters";
            return false;
        }

        var at = trimmed.IndexOf('@', StringComparison.Ordinal);
        if (at <= 0 || at != trimmed.LastIndexOf('@') || at == trimmed.Length - 1)
        {
            error = "email must have the form local@domain";
            return false;
        }

        var lower = trimmed.ToLowerInvariant();
        var local = lower.AsSpan(0, at);
        var domain = lower.AsSpan(at + 1);
        if (!IsValidLocal(local))
        {
            error = "email has an invalid local part (before '@')";
            return false;
        }

        if (!IsValidDomain(domain))
        {
            error = "email has an invalid domain";
            return false;
        }

        normalized = lower;
        error = string.Empty;
        return true;
    }

    private static bool IsValidLocal(ReadOnlySpan<char> local)
    {
        if (local.Length is 0 or > 64 || local[0] == '.' || local[^1] == '.' || local.Contains("..", StringComparison.Ordinal))
        {
            return false;
        }

        foreach (var c in local)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || LocalSpecials.Contains(c, StringComparison.Ordinal)))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsValidDomain(ReadOnlySpan<char> domain)
    {
        if (domain.Length > 253)
        {
            return false;
        }

        var labels = 0;
        var lastLabelNumeric = false;
        foreach (var range in domain.Split('.'))
        {
            var label = domain[range];
            if (label.Length is 0 or > 63 || label[0] == '-' || label[^1] == '-')
            {
                return false;
            }

            var numeric = true;
            foreach (var c in label)
            {
                if (!(char.IsAsciiLetterOrDigit(c) || c == '-'))
                {
                    return false;
                }

                numeric &= char.IsAsciiDigit(c);
            }

            labels++;
            lastLabelNumeric = numeric;
        }

        return labels >= 2 && !lastLabelNumeric;
    }
}
