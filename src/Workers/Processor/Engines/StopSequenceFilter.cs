namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// Holds back streamed text that might be the start of a stop sequence, so a stop sequence split
/// over several tokens is never partly emitted.
/// </summary>
internal sealed class StopSequenceFilter(IReadOnlyList<string>? stops)
{
    private readonly string[] _stops = stops is null ? [] : [.. stops];
    private string _pending = string.Empty;

    /// <summary>Adds text; returns what can be emitted now and whether a stop sequence was reached.</summary>
    public (string Emit, bool Stopped) Push(string text)
    {
        if (_stops.Length == 0) return (text, false);
        var buffer = _pending + text;
        var cut = -1;
        foreach (var stop in _stops)
        {
            var at = buffer.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            _pending = string.Empty;
            return (buffer[..cut], true);
        }
        var keep = LongestSuffixThatStartsAStop(buffer);
        _pending = buffer[^keep..];
        return (buffer[..^keep], false);
    }

    /// <summary>The held-back text, when the generation ends for another reason.</summary>
    public string Flush()
    {
        var rest = _pending;
        _pending = string.Empty;
        return rest;
    }

    private int LongestSuffixThatStartsAStop(string buffer)
    {
        var best = 0;
        foreach (var stop in _stops)
        {
            for (var length = Math.Min(stop.Length - 1, buffer.Length); length > best; length--)
            {
                if (buffer.AsSpan(buffer.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    best = length;
                    break;
                }
            }
        }
        return best;
    }
}
