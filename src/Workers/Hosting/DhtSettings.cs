using P2PInference.Facilities.Dht;

namespace P2PInference.Workers.Hosting;

/// <summary>The <c>Dht</c> section (see <see cref="KademliaDhtOptions"/> for what each does).</summary>
public sealed class DhtSettings
{
    public string ProtocolId { get; set; } = KademliaDhtOptions.DefaultProtocolId;

    public DhtMode Mode { get; set; } = DhtMode.Server;

    public TimeSpan ProviderRecordTtl { get; set; } = TimeSpan.FromMinutes(10);

    public TimeSpan QueryTimeout { get; set; } = TimeSpan.FromSeconds(5);

    public TimeSpan LookupTimeout { get; set; } = TimeSpan.FromSeconds(30);

    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromMinutes(5);
}
