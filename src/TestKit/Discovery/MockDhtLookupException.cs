namespace P2PInference.TestKit.Discovery;

/// <summary>A DHT failure the mock DHT was told to simulate (see <see cref="MockDhtRegistry.FailLookups"/>).</summary>
public sealed class MockDhtLookupException : Exception
{
    public MockDhtLookupException()
        : this("Simulated DHT lookup failure.")
    {
    }

    public MockDhtLookupException(string message)
        : base(message)
    {
    }

    public MockDhtLookupException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
