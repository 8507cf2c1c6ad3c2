using P2PInference.Facilities.Dht;

namespace P2PInference.Tests.Integration.Dht;

public sealed class BucketKeysTableTests
{
    /// <summary>
    /// The table shipped in src/Facilities/Dht/BucketKeys.table is exactly what <see cref="BucketKeys.Build"/>
    /// makes (about 675,000 hashes). If the key encoding changes, this fails and writes the new table
    /// next to the test output, to copy over the shipped one.
    /// </summary>
    [Test]
    public void ShippedTable_IsWhatBuildMakes()
    {
        var built = BucketKeys.Build();
        var shipped = BucketKeys.Load();
        if (built.SequenceEqual(shipped)) return;

        var path = Path.Combine(TestContext.CurrentContext.WorkDirectory, "BucketKeys.table");
        File.WriteAllBytes(path, built.SelectMany(v => new[] { (byte)(v >> 16), (byte)(v >> 8), (byte)v }).ToArray());
        Assert.Fail($"src/Facilities/Dht/BucketKeys.table differs from what BucketKeys.Build makes; the built table is at {path}");
    }
}
