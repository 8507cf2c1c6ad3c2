using P2PInference.Facilities.Dht;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Dht;

public sealed class BucketKeysTests
{
    [Test]
    public void For_EveryBucketARefreshAsksFor_GivesAKeyInThatBucket()
    {
        var random = TestSeed.CreateRandom();
        for (var node = 0; node < 16; node++)
        {
            var local = KadId.Random(random);
            for (var bucket = 0; bucket < BucketKeys.TableBits; bucket++)
            {
                var key = BucketKeys.For(local, bucket, random);
                Assert.That(local.CommonPrefixLength(KadId.FromKey(key)), Is.EqualTo(bucket), $"node {node}, bucket {bucket}");
            }
        }
    }

    [Test]
    public void ByTrying_TheWayForBucketsDeeperThanTheTable_GivesAKeyInTheBucket()
    {
        // Deeper than the table means 2^17 hashes or more; the same search at depth 6 is cheap.
        var random = TestSeed.CreateRandom();
        var local = KadId.Random(random);

        var key = BucketKeys.ByTrying(local, 6, random);

        Assert.That(local.CommonPrefixLength(KadId.FromKey(key)), Is.EqualTo(6));
    }

    [Test]
    public void For_AShallowBucket_SpreadsOverManyKeys_AndTheSameDrawsGiveTheSameKeys()
    {
        var local = KadId.Random(TestSeed.CreateRandom());
        var first = new Random(7);
        var again = new Random(7);

        var keys = Enumerable.Range(0, 50).Select(_ => Convert.ToHexString(BucketKeys.For(local, 2, first))).ToList();
        var replay = Enumerable.Range(0, 50).Select(_ => Convert.ToHexString(BucketKeys.For(local, 2, again))).ToList();

        // Bucket 2 leaves 13 of the table's 16 bits free: 8,192 keys to draw from.
        Assert.That(keys.Distinct().Count(), Is.GreaterThan(45));
        Assert.That(replay, Is.EqualTo(keys));
    }

    [Test]
    public void ShippedTable_NamesForEachPrefixAKeyThatHashesToIt()
    {
        var table = BucketKeys.Load();
        var random = TestSeed.CreateRandom();
        // A sample: all 65,536 take longer than a unit test should (the integration tier rebuilds the whole table).
        for (var i = 0; i < 4096; i++)
        {
            var prefix = (uint)random.Next(table.Length);
            Assert.That(KadId.FromKey(BucketKeys.KeyFor(table[prefix])).LeadingBits(BucketKeys.TableBits), Is.EqualTo(prefix), $"prefix {prefix:x4}");
        }
    }
}
