using P2PInference.Facilities.Discovery;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// A discovery that remembers what it announced, so the node can announce it again at once when its
/// addresses change (a relay reservation made or dropped): the provider records then carry the new
/// addresses instead of waiting for the next periodic re-announce.
/// </summary>
internal sealed class ReannouncingDiscovery(IDiscovery inner) : IDiscovery
{
    private readonly List<string> _topics = [];

    public IDiscovery Inner => inner;

    public async Task AnnounceAsync(string topic, CancellationToken cancellationToken)
    {
        lock (_topics)
        {
            if (!_topics.Contains(topic)) _topics.Add(topic);
        }
        await inner.AnnounceAsync(topic, cancellationToken);
    }

    public async Task UnannounceAsync(string topic, CancellationToken cancellationToken)
    {
        lock (_topics) _topics.Remove(topic);
        await inner.UnannounceAsync(topic, cancellationToken);
    }

    public Task<IReadOnlyList<DiscoveredPeer>> LookupAsync(string topic, CancellationToken cancellationToken) => inner.LookupAsync(topic, cancellationToken);

    public Task WaitUntilJoinedAsync(CancellationToken cancellationToken) => inner.WaitUntilJoinedAsync(cancellationToken);

    /// <summary>Announces every topic announced and not withdrawn again, with the node's current addresses.</summary>
    public async Task ReannounceAsync(CancellationToken cancellationToken)
    {
        string[] topics;
        lock (_topics) topics = _topics.ToArray();
        foreach (var topic in topics) await inner.AnnounceAsync(topic, cancellationToken);
    }
}
