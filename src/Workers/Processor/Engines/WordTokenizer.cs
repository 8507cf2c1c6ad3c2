namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// Splits text into the builtin model's tokens: words (letters and digits, joined by an inner
/// apostrophe or hyphen) and single punctuation marks. Works on positions so a long prompt can be
/// counted without allocating a string per token.
/// </summary>
internal static class WordTokenizer
{
    /// <summary>Finds the next token at or after <paramref name="position"/>; false at the end.</summary>
    public static bool Next(string text, ref int position, out int start, out int length)
    {
        var i = position;
        while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
        if (i >= text.Length)
        {
            position = i;
            start = i;
            length = 0;
            return false;
        }

        start = i;
        if (!IsWordChar(text[i]))
        {
            // Surrogate pairs stay together so a token is always valid UTF-16.
            i += char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
        }
        else
        {
            i++;
            while (i < text.Length)
            {
                if (IsWordChar(text[i])) i++;
                else if (IsJoiner(text[i]) && i + 1 < text.Length && IsWordChar(text[i + 1])) i += 2;
                else break;
            }
        }
        length = i - start;
        position = i;
        return true;
    }

    public static List<string> Tokenize(string text)
    {
        var tokens = new List<string>();
        var position = 0;
        while (Next(text, ref position, out var start, out var length))
            tokens.Add(text.Substring(start, length));
        return tokens;
    }

    /// <summary>True for a token written without a space before it.</summary>
    public static bool AttachesLeft(string token) => token.Length > 0 && !IsWordChar(token[0]);

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c);

    private static bool IsJoiner(char c) => c is '\'' or '\u2019' or '-';
}
