using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Threading;
using P2PInference.Tests.Unit.Support;

namespace P2PInference.Tests.Unit.Threading;

/// <summary>
/// <see cref="EventSubscribers"/>: an application's event handler that throws is logged and stops nothing — not the
/// subscribers after it, and not the code that raised the event (for <see cref="P2PHost.PeerConnected"/>, the
/// connection being registered).
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class EventSubscribersTests
{
    [Test]
    public void AThrowingSubscriber_IsLogged_AndTheOnesAfterItStillRun()
    {
        var log = new WarningLog();
        var seen = new List<string>();
        Action<int>? handler = null;
        handler += n => seen.Add($"first {n}");
        handler += _ => throw new InvalidOperationException("broken subscriber");
        handler += n => seen.Add($"third {n}");

        EventSubscribers.Raise(handler, 7, log, "Test.Changed");

        Assert.That(seen, Is.EqualTo(new[] { "first 7", "third 7" }));
        Assert.That(log.Warnings, Has.Count.EqualTo(1));
        Assert.That(log.Warnings[0], Does.Contain("Test.Changed").And.Contain("broken subscriber"));
    }

    [Test]
    public void EveryArity_ReachesEachSubscriber_AndNoHandlerIsNothing()
    {
        var log = new WarningLog();
        var calls = 0;
        Action none = () => calls++;
        Action<string, int> two = (a, b) => calls += a.Length + b;
        Action<string, int, bool> three = (a, b, c) => calls += c ? a.Length * b : 0;

        EventSubscribers.Raise(none + none, log, "none");
        EventSubscribers.Raise(two, "ab", 3, log, "two");
        EventSubscribers.Raise(three, "abc", 10, true, log, "three");
        EventSubscribers.Raise<int>(null, 1, log, "absent");

        Assert.That(calls, Is.EqualTo(2 + 5 + 30));
        Assert.That(log.Warnings, Is.Empty);
    }

    [Test]
    public async Task AHostsPeerConnectedHandlerThatThrows_LeavesTheConnectionServing_AndLaterHandlersRun(CancellationToken ct)
    {
        await using var hosts = new EchoHosts();
        var a = await hosts.StartAsync("a", ct);
        var b = await hosts.StartAsync("b", ct);
        var connected = new List<string>();
        b.PeerConnected += _ => throw new InvalidOperationException("an application's handler is broken");
        b.PeerConnected += connection => connected.Add(connection.RemotePeer.ToString());

        a.PeerStore.AddAddresses(b.PeerId, b.AdvertisedAddresses);
        var echoed = await EchoHosts.EchoAsync(a, b.PeerId, ct);

        Assert.That(echoed, Is.EqualTo("ping"u8.ToArray()));
        Assert.That(connected, Is.EqualTo(new[] { a.PeerId.ToString() }));
        Assert.That(b.Connections, Has.Count.EqualTo(1), "b registered the connection");
    }

    private sealed class WarningLog : ILogger
    {
        public List<string> Warnings { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) Warnings.Add($"{formatter(state, exception)}: {exception?.Message}");
        }
    }
}
