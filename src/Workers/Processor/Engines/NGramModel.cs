namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// Word n-gram counts with backoff. Contexts are matched case-insensitively; successors keep the
/// corpus's spelling. Successor lists are sorted ordinally so greedy ties and sampling do not
/// depend on dictionary order: the same seed gives the same text on every run.
/// </summary>
internal sealed class NGramModel
{
    public const string StartOfText = "<s>";
    public const string EndOfText = "</s>";
    private const char Separator = '\u001f';

    private readonly Dictionary<string, Successors> _table;

    private NGramModel(Dictionary<string, Successors> table, int maxOrder, int tokenCount)
    {
        _table = table;
        MaxOrder = maxOrder;
        TokenCount = tokenCount;
    }

    public int MaxOrder { get; }

    public int TokenCount { get; }

    public int ContextCount => _table.Count;

    /// <summary>Trains on paragraphs separated by blank lines; each paragraph is one text.</summary>
    public static NGramModel Train(string corpus, int maxOrder)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxOrder, 1);
        var counts = new Dictionary<string, Dictionary<string, int>>(StringComparer.Ordinal);
        var tokenCount = 0;
        foreach (var paragraph in SplitParagraphs(corpus))
        {
            var tokens = new List<string> { StartOfText };
            tokens.AddRange(WordTokenizer.Tokenize(paragraph));
            if (tokens.Count == 1) continue;
            tokens.Add(EndOfText);
            tokenCount += tokens.Count - 2;
            var keys = tokens.Select(t => t.ToLowerInvariant()).ToArray();
            for (var i = 1; i < tokens.Count; i++)
            {
                for (var k = 0; k < maxOrder && k <= i; k++)
                {
                    var key = string.Join(Separator, keys, i - k, k);
                    if (!counts.TryGetValue(key, out var successors))
                        counts[key] = successors = new Dictionary<string, int>(StringComparer.Ordinal);
                    successors[tokens[i]] = successors.GetValueOrDefault(tokens[i]) + 1;
                }
            }
        }
        if (tokenCount == 0) throw new InvalidDataException("The corpus holds no words.");

        var table = new Dictionary<string, Successors>(counts.Count, StringComparer.Ordinal);
        foreach (var (key, successors) in counts)
        {
            var words = successors.Keys.Order(StringComparer.Ordinal).ToArray();
            table[key] = new Successors(words, words.Select(w => successors[w]).ToArray());
        }
        return new NGramModel(table, maxOrder, tokenCount);
    }

    /// <summary>
    /// Picks the next token after <paramref name="history"/> (lower-cased tokens, oldest first),
    /// using at most <paramref name="order"/> − 1 of them and backing off to shorter contexts. When
    /// no recent word is known it starts a new text.
    /// </summary>
    public string Next(IReadOnlyList<string> history, int order, double temperature, Random random, double topP = 1.0)
    {
        var successors = Find(history, order);
        return successors.Pick(temperature, random, topP);
    }

    private Successors Find(IReadOnlyList<string> history, int order)
    {
        for (var k = Math.Min(order - 1, history.Count); k >= 1; k--)
        {
            var key = string.Join(Separator, Enumerable.Range(history.Count - k, k).Select(i => history[i]));
            if (_table.TryGetValue(key, out var found)) return found;
        }
        // Nothing recent is known (or a unigram model): start a new text, as the corpus does.
        if (order > 1 && _table.TryGetValue(StartOfText, out var start)) return start;
        return _table[string.Empty];
    }

    private static IEnumerable<string> SplitParagraphs(string corpus)
    {
        var current = new System.Text.StringBuilder();
        foreach (var rawLine in corpus.Split('\n'))
        {
            var line = rawLine.TrimEnd('\r');
            if (line.Length == 0 || line.StartsWith('#'))
            {
                // '#' lines are comments (licence notes) and, like blank lines, end a paragraph.
                if (current.Length > 0) yield return current.ToString();
                current.Clear();
                continue;
            }
            if (current.Length > 0) current.Append(' ');
            current.Append(line);
        }
        if (current.Length > 0) yield return current.ToString();
    }

    private sealed class Successors(string[] words, int[] counts)
    {
        private readonly int _best = IndexOfMax(counts);
        private readonly double[] _logCounts = counts.Select(c => Math.Log(c)).ToArray();

        public string Pick(double temperature, Random random, double topP = 1.0)
        {
            if (temperature <= 0 || words.Length == 1) return words[_best];
            // Weights count^(1/T), scaled by the largest so small temperatures cannot overflow.
            var max = _logCounts[_best];
            Span<double> weights = words.Length <= 256 ? stackalloc double[words.Length] : new double[words.Length];
            var total = 0.0;
            for (var i = 0; i < words.Length; i++)
            {
                weights[i] = Math.Exp((_logCounts[i] - max) / temperature);
                total += weights[i];
            }
            if (topP < 1) total = KeepNucleus(weights, total, topP);
            var target = random.NextDouble() * total;
            for (var i = 0; i < words.Length; i++)
            {
                target -= weights[i];
                if (target < 0) return words[i];
            }
            return words[^1];
        }

        /// <summary>Zeroes every weight outside the smallest set of likeliest words holding <paramref name="topP"/> of the mass; returns the mass kept.</summary>
        private static double KeepNucleus(Span<double> weights, double total, double topP)
        {
            var order = new int[weights.Length];
            for (var i = 0; i < order.Length; i++) order[i] = i;
            var byWeight = weights.ToArray();
            Array.Sort(order, (a, b) => byWeight[b].CompareTo(byWeight[a]) is var c && c != 0 ? c : a.CompareTo(b));
            var kept = 0.0;
            var k = 0;
            while (k < order.Length && kept < topP * total) kept += byWeight[order[k++]];
            for (; k < order.Length; k++) weights[order[k]] = 0;
            return kept;
        }

        private static int IndexOfMax(int[] values)
        {
            var best = 0;
            for (var i = 1; i < values.Length; i++)
                if (values[i] > values[best]) best = i;
            return best;
        }
    }
}
