using System.Globalization;
using NUnit.Framework;

namespace P2PInference.TestKit;

/// <summary>
/// One seed per test: from <c>P2P_TEST_SEED</c> when set (to replay a failure), otherwise chosen
/// fresh. The seed is written to the test's output, which the runner prints for a failed test.
/// </summary>
public static class TestSeed
{
    public const string EnvironmentVariable = "P2P_TEST_SEED";

    public static int Choose()
    {
        var text = Environment.GetEnvironmentVariable(EnvironmentVariable);
        var seed = text is not null && int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var fixedSeed)
            ? fixedSeed
            : System.Security.Cryptography.RandomNumberGenerator.GetInt32(int.MaxValue);
        TestContext.Out.WriteLine($"{EnvironmentVariable}={seed} (set it to replay this test)");
        return seed;
    }

    /// <summary>A <see cref="Random"/> from the test's seed.</summary>
    public static Random CreateRandom() => new(Choose());
}
