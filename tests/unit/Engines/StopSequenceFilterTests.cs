using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Unit.Engines;

public sealed class StopSequenceFilterTests
{
    [Test]
    public void Push_PassesTextThrough_WithoutStopSequences()
    {
        var filter = new StopSequenceFilter(null);

        Assert.That(filter.Push(" hello"), Is.EqualTo((" hello", false)));
    }

    [Test]
    public void Push_HoldsBackAPossibleStart_ThenReleasesIt_WhenItIsNotAStop()
    {
        var filter = new StopSequenceFilter(["END"]);

        Assert.That(filter.Push("we E"), Is.EqualTo(("we ", false)));
        Assert.That(filter.Push("N"), Is.EqualTo(("", false)));
        Assert.That(filter.Push("D!"), Is.EqualTo(("", true)));
        Assert.That(filter.Flush(), Is.Empty);
    }

    [Test]
    public void Push_ReleasesHeldText_WhenTheStopDoesNotMaterialise()
    {
        var filter = new StopSequenceFilter(["END"]);

        Assert.That(filter.Push("E"), Is.EqualTo(("", false)));
        Assert.That(filter.Push("x"), Is.EqualTo(("Ex", false)));
        Assert.That(filter.Push(" EN"), Is.EqualTo((" ", false)));
        Assert.That(filter.Flush(), Is.EqualTo("EN"));
    }

    [Test]
    public void Push_StopsAtTheEarliestOfSeveralStops()
    {
        var filter = new StopSequenceFilter(["b", "a"]);

        Assert.That(filter.Push("xxab"), Is.EqualTo(("xx", true)));
    }
}
