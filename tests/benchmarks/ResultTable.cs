using System.Globalization;
using System.Text;

namespace P2PInference.Benchmarks;

internal enum Better
{
    Higher,
    Lower,
}

/// <summary>One metric: our stack, the ceilings (raw TCP, ChaCha20-Poly1305) and js-libp2p, measured in the same run.</summary>
internal sealed class ResultRow(string group, string metric, string unit, Better better)
{
    public string Group { get; } = group;
    public string Metric { get; } = metric;
    public string Unit { get; } = unit;
    public Better Better { get; } = better;
    public double? Ours { get; set; }
    public double? Tcp { get; set; }
    public double? ChaCha { get; set; }
    public double? Js { get; set; }

    /// <summary>The lower of the ceilings; for throughput both bound us (crypto and the socket), elsewhere raw TCP does.</summary>
    public double? Ceiling => (Tcp, ChaCha) switch
    {
        ({ } t, { } c) => Math.Min(t, c),
        ({ } t, null) => t,
        (null, { } c) => c,
        _ => null,
    };

    /// <summary>A row's own goal beyond beating js, when it has one: at least this value of ours.</summary>
    public double? AtLeast { get; set; }

    /// <summary>A row's own goal: ours at least this many times js-libp2p's.</summary>
    public double? AtLeastTimesJs { get; set; }

    public bool? BeatsJs => Ours is { } o && Js is { } j ? (Better == Better.Higher ? o > j : o < j) : null;
}

/// <summary>Prints the result rows as a fixed-width table, followed by the notes that qualify them.</summary>
internal sealed class ResultTable
{
    private readonly List<ResultRow> _rows = [];
    private readonly List<string> _notes = [];

    public ResultRow Add(string group, string metric, string unit, Better better)
    {
        var row = new ResultRow(group, metric, unit, better);
        _rows.Add(row);
        return row;
    }

    public void Note(string note) => _notes.Add(note);

    public bool IsEmpty => _rows.Count == 0;

    public string Render()
    {
        string[] header = ["metric", "unit", "ours", "raw TCP", "ChaCha20-P1305", "js-libp2p", "ours/ceiling", "ours/js", "goal"];
        var lines = new List<string[]> { header };
        foreach (var r in _rows)
        {
            var goal = r.BeatsJs switch
            {
                true => "beats js",
                false => "BELOW js",
                null => "-",
            };
            if (r.Group == "throughput" && r.Ours is { } o && r.Ceiling is { } c)
                goal += o >= c / 2 ? ", >= ceil/2" : ", < ceil/2";
            if (r.AtLeast is { } least && r.Ours is { } ours)
                goal += (ours >= least ? ", >= " : ", < ") + Format(least);
            if (r.AtLeastTimesJs is { } times && r.Ours is { } mine && r.Js is { } js)
                goal += (mine >= times * js ? ", >= " : ", < ") + Format(times) + "x js";
            lines.Add(
            [
                r.Metric,
                r.Unit,
                Format(r.Ours),
                Format(r.Tcp),
                Format(r.ChaCha),
                Format(r.Js),
                Ratio(r.Ours, r.Ceiling),
                Ratio(r.Ours, r.Js),
                goal,
            ]);
        }
        var sb = new StringBuilder(Markdown(lines));
        if (_notes.Count > 0)
        {
            sb.AppendLine();
            foreach (var n in _notes) sb.AppendLine("- " + n);
        }
        return sb.ToString();
    }

    /// <summary>
    /// <paramref name="lines"/> (the header first) as a Markdown table: the first two columns (metric,
    /// unit) left-aligned, the figures right-aligned.
    /// </summary>
    internal static string Markdown(IReadOnlyList<string[]> lines)
    {
        var widths = Enumerable.Range(0, lines[0].Length).Select(i => lines.Max(l => l[i].Length)).ToArray();
        var sb = new StringBuilder();
        for (var li = 0; li < lines.Count; li++)
        {
            var cells = lines[li].Select((cell, i) => i <= 1 ? cell.PadRight(widths[i]) : cell.PadLeft(widths[i]));
            sb.AppendLine("| " + string.Join(" | ", cells) + " |");
            if (li == 0)
                sb.AppendLine("|" + string.Join("|", widths.Select((w, i) => i <= 1 ? new string('-', w + 2) : new string('-', w + 1) + ":")) + "|");
        }
        return sb.ToString();
    }

    private static string Format(double? value) => value switch
    {
        null => "n/a",
        { } v when Math.Abs(v) >= 1000 => v.ToString("N0", CultureInfo.InvariantCulture),
        { } v when Math.Abs(v) >= 100 => v.ToString("F0", CultureInfo.InvariantCulture),
        { } v when Math.Abs(v) >= 10 => v.ToString("F1", CultureInfo.InvariantCulture),
        { } v => v.ToString("F2", CultureInfo.InvariantCulture),
    };

    private static string Ratio(double? a, double? b) =>
        a is { } x && b is { } y && y != 0 ? (x / y).ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";
}
