using System.Globalization;

namespace P2PInference.Benchmarks;

/// <summary>
/// Ours against a baseline in alternating short rounds, the order swapped each pair, and the ratio
/// taken within each pair. Load that comes and goes on a shared machine then moves both sides of a
/// pair alike; one long run of each, minutes apart, compared whatever the load was at the time.
/// </summary>
internal sealed record PairedRatio(double OursMedian, double BaselineMedian, double[] Ratios)
{
    public double MedianRatio => Median(Ratios);

    public static async Task<PairedRatio> MeasureAsync(int pairs, Func<Task<double>> ours, Func<Task<double>> baseline)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pairs, 1);
        var oursRates = new double[pairs];
        var baselineRates = new double[pairs];
        for (var i = 0; i < pairs; i++)
        {
            if (i % 2 == 0)
            {
                oursRates[i] = await ours();
                baselineRates[i] = await baseline();
            }
            else
            {
                baselineRates[i] = await baseline();
                oursRates[i] = await ours();
            }
        }
        return new PairedRatio(Median(oursRates), Median(baselineRates), oursRates.Zip(baselineRates, (o, b) => o / b).ToArray());
    }

    /// <summary>"median 0.43× (0.38–0.51× over 6 pairs)".</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"median {MedianRatio:F2}× ({Ratios.Min():F2}–{Ratios.Max():F2}× over {Ratios.Length} pairs)");

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
